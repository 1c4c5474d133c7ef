//! Accounts, logins, sessions and API tokens.

use jiff::{SignedDuration, Timestamp};
use kiroku_domain::{Actor, ActorKind, AuditEvent, Operation, Permission, Role, Source, Target};
use kiroku_store::{SessionRecord, TokenRecord, Tx, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::credentials::{self, check_totp, digest, new_secret, new_totp_secret, totp_uri};
use crate::{App, AppError, Caller, Principal, Result, Via};

pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub password: String,
}

/// A user as the API shows one: never the hash or the TOTP secret.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub totp_enrolled: bool,
    pub disabled: bool,
    pub created_at: Timestamp,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            id: u.id,
            name: u.name.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            role: u.role,
            totp_enrolled: u.totp_secret.is_some(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id,
            user_id: t.user_id,
            name: t.name.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token as issued: the secret is shown this once and never again.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub token: TokenView,
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
    pub totp_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub secret: String,
    pub expires_at: Timestamp,
    pub user: UserView,
}

/// Created user, and the TOTP enrolment URI when the role requires one.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedUser {
    pub user: UserView,
    pub totp_uri: Option<String>,
}

fn check_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(name.to_string())
    } else {
        Err(AppError::invalid(
            "name",
            "invalid_name",
            "must be 1–64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

fn check_password(pw: &str) -> Result<()> {
    let n = pw.chars().count();
    if n < PASSWORD_MIN {
        return Err(AppError::invalid(
            "password",
            "too_short",
            format!("must be at least {PASSWORD_MIN} characters"),
        ));
    }
    if n > PASSWORD_MAX {
        return Err(AppError::invalid(
            "password",
            "too_long",
            format!("must be at most {PASSWORD_MAX} characters"),
        ));
    }
    Ok(())
}

/// Whether a refused credential matched nothing: a guess, counted
/// against its address. Revoked and expired ones were real.
pub(crate) fn is_guess(error_code: &str) -> bool {
    matches!(error_code, "invalid_token" | "invalid_session")
}

fn user_target(u: &UserRecord) -> Target {
    Target::new("user", Some(u.id.to_string()))
}

fn unix_secs(t: Timestamp) -> u64 {
    u64::try_from(t.as_second()).unwrap_or(0)
}

impl App {
    fn needs_totp(&self, role: Role) -> bool {
        self.config.auth.totp_required_for.contains(&role)
    }

    pub async fn create_user(&self, caller: &Caller, input: NewUser) -> Result<CreatedUser> {
        caller.require(Permission::UserManage)?;
        let name = check_name(&input.name)?;
        check_password(&input.password)?;
        let display_name =
            kiroku_domain::validate::line("display_name", &input.display_name, 200, false)?;
        let email = match &input.email {
            Some(e) => {
                let e = kiroku_domain::validate::line("email", e, 254, true)?;
                if !e.contains('@') {
                    return Err(AppError::invalid(
                        "email",
                        "invalid_email",
                        "must be an email address",
                    ));
                }
                Some(e)
            }
            None => None,
        };
        if self.store.user_by_name(&name).await?.is_some() {
            return Err(AppError::Duplicate {
                what: "user",
                field: "name",
            });
        }
        let password_hash = credentials::hash_password(input.password).await?;
        let totp_secret = if self.needs_totp(input.role) {
            Some(new_totp_secret()?)
        } else {
            None
        };
        let now = self.now();
        let user = UserRecord {
            id: Uuid::now_v7(),
            display_name: if display_name.is_empty() {
                name.clone()
            } else {
                display_name
            },
            name,
            email,
            role: input.role,
            password_hash,
            totp_secret,
            totp_last_step: None,
            disabled: false,
            created_at: now,
            updated_at: now,
        };
        let view = UserView::from(&user);
        let mut tx = self.begin().await?;
        tx.insert_user(&user)
            .await
            .map_err(crate::error::duplicate_of("user", "name"))?;
        let event = caller
            .event(now, Operation::Create, "user_created", user_target(&user))
            .with_change(None, Some(json!(view)));
        tx.append_audit(&event).await?;
        tx.commit().await?;
        Ok(CreatedUser {
            totp_uri: user.totp_secret.as_deref().map(|s| totp_uri(&user.name, s)),
            user: view,
        })
    }

    /// Replaces a user's TOTP secret (enrolment or a lost device).
    pub async fn reset_totp(&self, caller: &Caller, name: &str) -> Result<String> {
        caller.require(Permission::UserManage)?;
        let mut user = self
            .store
            .user_by_name(name)
            .await?
            .ok_or(AppError::NotFound { what: "user" })?;
        let secret = new_totp_secret()?;
        user.totp_secret = Some(secret.clone());
        user.totp_last_step = None;
        user.updated_at = self.now();
        let mut tx = self.begin().await?;
        tx.update_user(&user).await?;
        tx.append_audit(&caller.event(
            user.updated_at,
            Operation::Update,
            "user_totp_reset",
            user_target(&user),
        ))
        .await?;
        tx.commit().await?;
        Ok(totp_uri(&user.name, &secret))
    }

    pub async fn users(&self, caller: &Caller) -> Result<Vec<UserView>> {
        caller.require(Permission::UserManage)?;
        Ok(self
            .store
            .users()
            .await?
            .iter()
            .map(UserView::from)
            .collect())
    }

    fn throttle_keys(name: &str, source: &Source) -> (String, Option<String>) {
        (
            format!("user:{}", name.to_lowercase()),
            source.ip.as_ref().map(|ip| format!("ip:{ip}")),
        )
    }

    fn login_event(
        &self,
        source: &Source,
        name: &str,
        user: Option<&UserRecord>,
        action: &str,
        now: Timestamp,
    ) -> AuditEvent {
        let actor = match user {
            Some(u) => Actor {
                kind: ActorKind::User,
                id: Some(u.id.to_string()),
                name: Some(u.name.clone()),
                role: Some(u.role.as_str().into()),
            },
            None => Actor {
                kind: ActorKind::Anonymous,
                id: None,
                name: Some(name.chars().take(64).collect()),
                role: None,
            },
        };
        AuditEvent::success(
            now,
            &actor,
            source,
            Operation::Login,
            action,
            Target::new("session", None),
        )
    }

    /// Logs in with name, password and (where enrolled) a TOTP code.
    ///
    /// Failures count against the account name and the source address; past
    /// the policy's limits both are locked for a while, and every failure and
    /// lock is audited as `authn_login_fail` / `authn_login_lock`.
    pub async fn login(&self, source: &Source, req: LoginRequest) -> Result<IssuedSession> {
        let now = self.now();
        let policy = &self.config.auth;
        let name = req.name.trim().to_lowercase();
        let (user_key, ip_key) = Self::throttle_keys(&name, source);
        for key in std::iter::once(&user_key).chain(ip_key.as_ref()) {
            if let Some(retry_after_secs) = self.locked_for(key, now).await? {
                self.audit_only(
                    self.login_event(source, &name, None, "authn_login_fail", now)
                        .failure("too_many_attempts"),
                )
                .await?;
                return Err(AppError::Locked {
                    retry_after_secs,
                    audited: true,
                });
            }
        }
        let user = if name.len() <= 64 {
            self.store.user_by_name(&name).await?
        } else {
            None
        };
        let user = user.filter(|u| !u.disabled);
        let password_ok = credentials::verify_password(
            req.password.chars().take(PASSWORD_MAX).collect(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
        let Some(mut user) = user.filter(|_| password_ok) else {
            return Err(self
                .login_failed(source, &name, None, "invalid_credentials", now)
                .await?);
        };
        if user.role == Role::Application {
            self.audit_only(
                self.login_event(source, &name, Some(&user), "authn_login_fail", now)
                    .failure("token_only"),
            )
            .await?;
            return Err(AppError::Unauthenticated {
                code: "token_only",
                message: "application accounts send API tokens; they do not log in",
                audited: true,
            });
        }
        if user.totp_secret.is_none() && self.needs_totp(user.role) {
            self.audit_only(
                self.login_event(source, &name, Some(&user), "authn_login_fail", now)
                    .failure("totp_enrollment_required"),
            )
            .await?;
            return Err(AppError::Unauthenticated {
                code: "totp_enrollment_required",
                message: "your role requires a second factor; ask an admin to run `kiroku user totp-reset`",
                audited: true,
            });
        }
        if let Some(secret) = user.totp_secret.clone() {
            let Some(code) = req.totp_code.as_deref().filter(|c| !c.trim().is_empty()) else {
                return Err(AppError::Unauthenticated {
                    code: "totp_required",
                    message: "enter the 6-digit code from your authenticator app (totp_code)",
                    audited: false,
                });
            };
            match check_totp(&secret, code, unix_secs(now), user.totp_last_step)? {
                Some(step) => user.totp_last_step = Some(step),
                None => {
                    return Err(self
                        .login_failed(source, &name, Some(&user), "invalid_totp", now)
                        .await?);
                }
            }
        }
        let (secret, hash) = new_secret()?;
        let session = SessionRecord {
            hash,
            user_id: user.id,
            created_at: now,
            expires_at: now + policy.session_ttl,
        };
        let mut tx = self.begin().await?;
        tx.clear_failures(&user_key).await?;
        if user.totp_secret.is_some() {
            user.updated_at = now;
            tx.update_user(&user).await?;
        }
        tx.insert_session(&session).await?;
        tx.append_audit(&self.login_event(source, &name, Some(&user), "authn_login_success", now))
            .await?;
        tx.commit().await?;
        Ok(IssuedSession {
            secret,
            expires_at: session.expires_at,
            user: UserView::from(&user),
        })
    }

    /// Counts and audits a failed login; returns the error to answer with.
    async fn login_failed(
        &self,
        source: &Source,
        name: &str,
        user: Option<&UserRecord>,
        code: &'static str,
        now: Timestamp,
    ) -> Result<AppError> {
        let policy = &self.config.auth;
        let (user_key, ip_key) = Self::throttle_keys(name, source);
        let mut tx = self.begin().await?;
        let mut locked = false;
        let mut keys = vec![(user_key, policy.account_lock_after)];
        keys.extend(ip_key.map(|k| (k, policy.address_lock_after)));
        for (key, limit) in keys {
            let lock = self.login_event(source, name, user, "authn_login_lock", now);
            locked |= self
                .count_toward_lock(&mut tx, &key, limit, now, lock)
                .await?;
        }
        tx.append_audit(
            &self
                .login_event(source, name, user, "authn_login_fail", now)
                .failure(code),
        )
        .await?;
        tx.commit().await?;
        Ok(if locked {
            AppError::Locked {
                retry_after_secs: policy.lock_for.as_secs(),
                audited: true,
            }
        } else if code == "invalid_totp" {
            AppError::Unauthenticated {
                code,
                message: "the authenticator code is wrong or already used",
                audited: true,
            }
        } else {
            AppError::Unauthenticated {
                code,
                message: "wrong name or password",
                audited: true,
            }
        })
    }

    pub async fn logout(&self, caller: &Caller) -> Result<()> {
        let Some(Principal {
            via: Via::Session { hash },
            ..
        }) = &caller.principal
        else {
            return Err(AppError::invalid(
                "session",
                "not_a_session",
                "only a browser session can log out; revoke tokens instead",
            ));
        };
        let mut tx = self.begin().await?;
        tx.delete_session(hash).await?;
        tx.append_audit(&caller.event(
            self.now(),
            Operation::Logout,
            "authn_logout",
            Target::new("session", None),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn active_user(&self, id: Uuid) -> Result<UserRecord> {
        match self.store.user(id).await? {
            Some(u) if !u.disabled => Ok(u),
            _ => Err(AppError::unauthenticated(
                "account_disabled",
                "this account is disabled",
            )),
        }
    }

    /// Seconds left of `key`'s lock, if it is locked.
    async fn locked_for(&self, key: &str, now: Timestamp) -> Result<Option<i64>> {
        Ok(self
            .store
            .throttle(key)
            .await?
            .and_then(|t| t.locked_until)
            .filter(|until| *until > now)
            .map(|until| until.duration_since(now).as_secs().max(1)))
    }

    /// Counts a failure against `key` within the policy's window; at
    /// `limit` the key is locked and `lock` (with the count) is audited.
    /// Whether it locked.
    async fn count_toward_lock(
        &self,
        tx: &mut Box<dyn Tx>,
        key: &str,
        limit: i64,
        now: Timestamp,
        lock: AuditEvent,
    ) -> Result<bool> {
        let policy = &self.config.auth;
        let t = tx
            .count_failure(key, now, now - policy.failure_window)
            .await?;
        if t.failures < limit {
            return Ok(false);
        }
        tx.lock_key(key, now + policy.lock_for).await?;
        tx.append_audit(
            &lock
                .with_change(None, Some(json!({ "key": key, "failures": t.failures })))
                .failure("too_many_attempts"),
        )
        .await?;
        Ok(true)
    }

    /// Refuses every credential from an address locked for guessing them
    /// (wrong passwords, or tokens and sessions that match nothing).
    async fn address_unlocked(&self, source: &Source) -> Result<()> {
        let Some(key) = Self::throttle_keys("", source).1 else {
            return Ok(());
        };
        match self.locked_for(&key, self.now()).await? {
            Some(retry_after_secs) => Err(AppError::Locked {
                retry_after_secs,
                audited: false,
            }),
            None => Ok(()),
        }
    }

    /// Writes the refusal of a guessed credential, counted against its
    /// source address in the same transaction as a failed login is; past
    /// `address_lock_after` within the window the address is locked
    /// (`authn_address_lock`) and refused every credential for a while.
    pub(crate) async fn credential_guessed(
        &self,
        source: &Source,
        refusal: AuditEvent,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(key) = Self::throttle_keys("", source).1 {
            let now = self.now();
            let lock = AuditEvent::success(
                now,
                &Actor::anonymous(),
                source,
                Operation::Login,
                "authn_address_lock",
                Target::new("address", source.ip.clone()),
            );
            self.count_toward_lock(
                &mut tx,
                &key,
                self.config.auth.address_lock_after,
                now,
                lock,
            )
            .await?;
        }
        tx.append_audit(&refusal).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolves a bearer token to its principal.
    pub async fn authenticate_token(&self, secret: &str, source: &Source) -> Result<Principal> {
        self.address_unlocked(source).await?;
        let now = self.now();
        let t = self
            .store
            .token_by_hash(&digest(secret))
            .await?
            .ok_or_else(|| {
                AppError::unauthenticated("invalid_token", "the API token is not valid")
            })?;
        if t.revoked_at.is_some() {
            return Err(AppError::unauthenticated(
                "token_revoked",
                "the API token has been revoked",
            ));
        }
        if t.expires_at.is_some_and(|e| e <= now) {
            return Err(AppError::unauthenticated(
                "token_expired",
                "the API token has expired",
            ));
        }
        let user = self.active_user(t.user_id).await?;
        if t.last_used_at
            .is_none_or(|at| now.duration_since(at) > SignedDuration::from_mins(1))
        {
            self.store.touch_token(t.id, now).await?;
        }
        Ok(Principal {
            user: Some(user),
            via: Via::Token { id: t.id },
        })
    }

    /// Resolves a session cookie to its principal.
    pub async fn authenticate_session(&self, secret: &str, source: &Source) -> Result<Principal> {
        self.address_unlocked(source).await?;
        let hash = digest(secret);
        let s = self.store.session_by_hash(&hash).await?.ok_or_else(|| {
            AppError::unauthenticated("invalid_session", "the session is not valid; log in again")
        })?;
        if s.expires_at <= self.now() {
            return Err(AppError::unauthenticated(
                "session_expired",
                "the session has expired; log in again",
            ));
        }
        let user = self.active_user(s.user_id).await?;
        Ok(Principal {
            user: Some(user),
            via: Via::Session { hash },
        })
    }

    /// Issues an API token for `for_user` (the caller when absent; admins
    /// may issue for anyone).
    pub async fn create_token(
        &self,
        caller: &Caller,
        for_user: Option<&str>,
        name: &str,
        expires_in_days: Option<i64>,
    ) -> Result<IssuedToken> {
        caller.require(Permission::OwnTokens)?;
        let name = kiroku_domain::validate::line("name", name, 100, true)?;
        let user = match (for_user, caller.user()) {
            (Some(n), Some(me)) if n == me.name => me.clone(),
            (Some(n), _) => {
                caller.require(Permission::UserManage)?;
                self.store
                    .user_by_name(n)
                    .await?
                    .ok_or(AppError::NotFound { what: "user" })?
            }
            (None, Some(me)) => me.clone(),
            (None, None) => {
                return Err(AppError::invalid(
                    "user",
                    "required",
                    "name the user the token is for",
                ));
            }
        };
        let now = self.now();
        let expires_at = match expires_in_days {
            Some(d) if (1..=3650).contains(&d) => Some(now + SignedDuration::from_hours(24 * d)),
            Some(_) => {
                return Err(AppError::invalid(
                    "expires_in_days",
                    "out_of_range",
                    "must be between 1 and 3650",
                ));
            }
            None => None,
        };
        let (secret, hash) = new_secret()?;
        let token = TokenRecord {
            id: Uuid::now_v7(),
            user_id: user.id,
            name,
            hash,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        let view = TokenView::from(&token);
        let mut tx = self.begin().await?;
        tx.insert_token(&token).await?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    "authn_token_created",
                    Target::new("token", Some(token.id.to_string())),
                )
                .with_change(None, Some(json!(view))),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            token: view,
            secret,
        })
    }

    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenView>> {
        caller.require(Permission::OwnTokens)?;
        let me = caller.user().ok_or(AppError::NotFound { what: "user" })?;
        Ok(self
            .store
            .tokens_of(me.id)
            .await?
            .iter()
            .map(TokenView::from)
            .collect())
    }

    /// Revokes a token: one's own, or anyone's for admins.
    pub async fn revoke_token(&self, caller: &Caller, id: Uuid) -> Result<()> {
        caller.require(Permission::OwnTokens)?;
        let owns = match caller.user() {
            Some(me) => self
                .store
                .tokens_of(me.id)
                .await?
                .iter()
                .any(|t| t.id == id),
            None => false,
        };
        if !owns {
            // Others' tokens are invisible to non-admins: not found, not forbidden.
            caller
                .require(Permission::UserManage)
                .map_err(|_| AppError::NotFound { what: "token" })?;
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        if !tx.revoke_token(id, now).await? {
            return Err(AppError::NotFound { what: "token" });
        }
        tx.append_audit(&caller.event(
            now,
            Operation::Delete,
            "authn_token_revoked",
            Target::new("token", Some(id.to_string())),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
