//! The JSON body and query-string extractors: malformed, mistyped,
//! oversized or non-JSON input becomes API errors that name the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

/// `missing field `title`` → `title`.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {message}"),
            ),
            Category::Data => data_error(&path, message),
        }
    })
}

/// A value of the wrong shape, named by its path: the same codes for JSON
/// bodies and query strings.
pub fn data_error(path: &str, message: String) -> ApiError {
    let joined = |name: String| {
        if path == "." {
            name
        } else {
            format!("{path}.{name}")
        }
    };
    let (code, field) = if message.starts_with("missing field") {
        (
            "required",
            joined(quoted_name(&message).unwrap_or_default()),
        )
    } else if message.starts_with("unknown field") {
        // The path already ends with the unknown name.
        ("unknown_field", path.to_string())
    } else if message.starts_with("unknown variant") {
        ("unknown_value", path.to_string())
    } else {
        ("invalid_type", path.to_string())
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
}

/// A query string, deserialised with the same error codes as a body.
pub struct ApiQuery<T>(pub T);

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        data_error(&path, e.into_inner().to_string())
    })
}

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// An optional RFC 3339 time parameter. The parser's reason is kept: a
/// time can be well formed and still out of range, or lack its offset.
pub fn time_param(field: &str, v: Option<String>) -> Result<Option<jiff::Timestamp>, ApiError> {
    v.map(|s| {
        s.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_time",
                format!("must be an RFC 3339 time such as 2026-11-21T09:00:00+09:00 ({e})"),
            )
            .field(field)
        })
    })
    .transpose()
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body must be at most {} bytes", crate::BODY_LIMIT),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        title: String,
        n: Option<i64>,
    }

    fn err(body: &str) -> (StatusCode, String, Option<String>) {
        let e = parse_json::<T>(body.as_bytes()).unwrap_err();
        (e.status, e.body.code, e.body.field)
    }

    #[test]
    fn errors_name_fields() {
        assert_eq!(
            err("{"),
            (StatusCode::BAD_REQUEST, "malformed_json".into(), None)
        );
        assert_eq!(err("{}").2.as_deref(), Some("title"));
        assert_eq!(err(r#"{"title":1}"#).2.as_deref(), Some("title"));
        assert_eq!(err(r#"{"title":"a","x":1}"#).1, "unknown_field");
        assert_eq!(err(r#"{"title":"a","n":"x"}"#).2.as_deref(), Some("n"));
        let e = parse_json::<serde_json::Value>("[".repeat(10_000).as_bytes()).unwrap_err();
        assert_eq!(e.body.code, "malformed_json");
    }

    #[test]
    fn a_refused_time_says_why() {
        let why = |v: &str| {
            let e = time_param("from", Some(v.into())).unwrap_err();
            assert_eq!(
                (e.body.code.as_str(), e.body.field.as_deref()),
                ("invalid_time", Some("from"))
            );
            e.body.message
        };
        assert!(why("9999-12-31T23:59:59Z").contains("not in the required range"));
        assert!(why("2026-11-21T09:00:00").contains("offset"));
        assert!(why("tuesday").contains("year"));
        assert!(time_param("from", Some("2026-11-21T09:00:00+09:00".into())).is_ok());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        seq: u64,
        limit: Option<i64>,
    }

    #[test]
    fn query_errors_name_fields() {
        let err = |q: &str| {
            let e = parse_query::<Q>(q).unwrap_err();
            (e.body.code, e.body.field)
        };
        assert_eq!(err("seq=abc"), ("invalid_type".into(), Some("seq".into())));
        assert_eq!(err("limit=1"), ("required".into(), Some("seq".into())));
        assert_eq!(
            err("seq=1&bogus=2"),
            ("unknown_field".into(), Some("bogus".into()))
        );
        assert_eq!(
            err("seq=1&limit=ten"),
            ("invalid_type".into(), Some("limit".into()))
        );
        assert_eq!(parse_query::<Q>("seq=7&limit=3").unwrap().seq, 7);
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let e = parse_json::<T>(b"{\"title\":\"\xff\"}").unwrap_err();
        assert_eq!(e.body.code, "malformed_json");
    }
}
