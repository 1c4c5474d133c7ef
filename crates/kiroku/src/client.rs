//! The API client the CLI uses, and the credentials `kiroku login` keeps.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug)]
pub enum ClientError {
    /// Kiroku answered with an error.
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// Kiroku could not be reached.
    Unreachable { server: String, reason: String },
    /// Something answered that is not Kiroku.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api {
                status,
                code,
                message,
                field,
            } => {
                write!(f, "{message} ({code}")?;
                if let Some(field) = field {
                    write!(f, ", field {field}")?;
                }
                write!(f, ", HTTP {})", status.as_u16())?;
                if *status == StatusCode::UNAUTHORIZED {
                    write!(
                        f,
                        "\nhint: run `kiroku login --server URL --name NAME`, or set KIROKU_TOKEN"
                    )?;
                }
                Ok(())
            }
            ClientError::Unreachable { server, reason } => write!(
                f,
                "cannot reach Kiroku at {server}: {reason}\nhint: is `kiroku serve` running there? Check --server or KIROKU_SERVER"
            ),
            ClientError::Protocol(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub token: String,
}

/// `$KIROKU_CREDENTIALS`, else `$XDG_CONFIG_HOME/kiroku/credentials.toml`,
/// else `~/.config/kiroku/credentials.toml`.
pub fn credentials_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KIROKU_CREDENTIALS") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kiroku").join("credentials.toml"))
}

pub fn load_credentials() -> Option<Credentials> {
    let text = std::fs::read_to_string(credentials_path()?).ok()?;
    toml::from_str(&text).ok()
}

/// Writes the credentials readable by the owner only.
pub fn save_credentials(c: &Credentials) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path =
        credentials_path().ok_or_else(|| anyhow::anyhow!("set HOME or KIROKU_CREDENTIALS"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(toml::to_string(c)?.as_bytes())?;
    Ok(path)
}

pub struct Client {
    http: reqwest::Client,
    pub server: String,
    token: Option<String>,
    cookie: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let server = server.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ClientError::Protocol(format!(
                "the server must be an http:// or https:// URL, not {server:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kiroku-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Client {
            http,
            server,
            token,
            cookie: None,
        })
    }

    pub fn with_session(mut self, cookie: String) -> Self {
        self.cookie = Some(cookie);
        self
    }

    /// Sends a request, conditional on the resource's `version` when
    /// given; returns the status, headers and body as they came.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        version: Option<i64>,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.server, path));
        if let Some(v) = version {
            req = req.header(
                reqwest::header::IF_MATCH,
                kiroku_domain::incident::version_tag(v),
            );
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            reason: e.without_url().to_string(),
        })?;
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((status, headers, bytes.to_vec()))
    }

    /// Sends a request; returns the JSON body (Null for 204) and headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, reqwest::header::HeaderMap), ClientError> {
        self.send_if_version(method, path, body, None).await
    }

    /// As `send`, refused with 409 unless the resource is still at
    /// `version`, when one is given.
    pub async fn send_if_version(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        version: Option<i64>,
    ) -> Result<(Value, reqwest::header::HeaderMap), ClientError> {
        let (status, headers, bytes) = self.exchange(method, path, body, version).await?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                ClientError::Protocol(format!("HTTP {status} with a body that is not JSON"))
            })?
        };
        if status.is_success() {
            return Ok((json, headers));
        }
        Err(api_error(status, &json))
    }

    /// A GET whose answer is a file (a report), not JSON.
    pub async fn get_file(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let (status, _, bytes) = self.exchange(Method::GET, path, None, None).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(api_error(status, &json))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        Ok(self.send(Method::GET, path, None).await?.0)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        Ok(self.send(Method::POST, path, Some(body)).await?.0)
    }
}

/// The API's JSON error body as a client error.
fn api_error(status: reqwest::StatusCode, json: &Value) -> ClientError {
    let s = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
    ClientError::Api {
        status,
        code: s("code").unwrap_or_else(|| "unknown".into()),
        message: s("message").unwrap_or_else(|| format!("HTTP {status}")),
        field: s("field"),
    }
}
