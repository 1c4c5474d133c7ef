//! Who is asking, and from where.

use kiroku_domain::{Actor, ActorKind, AuditEvent, Operation, Permission, Source, Target, UserRef};
use kiroku_store::UserRecord;
use uuid::Uuid;

use crate::{AppError, Result};

/// How a principal proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Session {
        hash: String,
    },
    Token {
        id: Uuid,
    },
    /// An operator on the database host, running the CLI against the store.
    Local {
        os_user: String,
    },
    /// Kiroku itself, acting on what it observed (raising detections).
    System,
    /// A signed link or a text reply from a page, made for one person.
    Link,
    /// A monitoring system, by the routing key of one integration.
    Integration {
        id: Uuid,
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub user: Option<UserRecord>,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub source: Source,
}

impl Caller {
    pub fn anonymous(source: Source) -> Self {
        Caller {
            principal: None,
            source,
        }
    }

    /// The operator on the database host: full rights, audited as such.
    pub fn local_operator() -> Self {
        let os_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Caller {
            principal: Some(Principal {
                user: None,
                via: Via::Local { os_user },
            }),
            source: Source::local_cli(),
        }
    }

    /// Kiroku itself: full rights, audited as the system.
    pub fn system() -> Self {
        Caller {
            principal: Some(Principal {
                user: None,
                via: Via::System,
            }),
            source: Source::system(),
        }
    }

    /// A monitoring system sending alerts through `integration`.
    pub fn integration(id: Uuid, name: &str, source: Source) -> Self {
        Caller {
            principal: Some(Principal {
                user: None,
                via: Via::Integration {
                    id,
                    name: name.to_string(),
                },
            }),
            source,
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.principal {
            None => Actor::anonymous(),
            Some(Principal {
                via: Via::Integration { id, name },
                ..
            }) => Actor {
                kind: ActorKind::Integration,
                id: Some(id.to_string()),
                name: Some(name.clone()),
                role: Some("integration".into()),
            },
            Some(Principal {
                via: Via::System, ..
            }) => Actor::system(),
            Some(Principal {
                via: Via::Local { os_user },
                ..
            }) => Actor {
                kind: ActorKind::System,
                id: None,
                name: Some(format!("os:{os_user}")),
                role: Some("operator".into()),
            },
            Some(Principal { user: Some(u), via }) => Actor {
                kind: match via {
                    Via::Token { .. } => ActorKind::Token,
                    _ => ActorKind::User,
                },
                id: Some(u.id.to_string()),
                name: Some(u.name.clone()),
                role: Some(u.role.as_str().into()),
            },
            Some(Principal { user: None, .. }) => Actor::anonymous(),
        }
    }

    /// An audit event of this caller's, successful unless marked failed.
    pub fn event(
        &self,
        at: jiff::Timestamp,
        operation: Operation,
        action: &str,
        target: Target,
    ) -> AuditEvent {
        AuditEvent::success(at, &self.actor(), &self.source, operation, action, target)
    }

    /// The caller's user, when the caller is one.
    pub fn user(&self) -> Option<&UserRecord> {
        self.principal.as_ref().and_then(|p| p.user.as_ref())
    }

    pub fn user_ref(&self) -> Option<UserRef> {
        self.user().map(|u| UserRef {
            id: u.id,
            name: u.name.clone(),
        })
    }

    /// Fails unless the caller is authenticated and their role grants `p`.
    pub fn require(&self, p: Permission) -> Result<()> {
        match &self.principal {
            None => Err(AppError::unauthenticated(
                "missing_credentials",
                "log in or send an API token (Authorization: Bearer …)",
            )),
            Some(Principal {
                via: Via::Local { .. } | Via::System,
                ..
            }) => Ok(()),
            Some(Principal { user: Some(u), .. }) if u.role.allows(p) => Ok(()),
            Some(Principal { user: Some(u), .. }) => Err(AppError::Forbidden {
                role: u.role.as_str(),
                permission: p.as_str(),
            }),
            Some(Principal { user: None, .. }) => Err(AppError::unauthenticated(
                "missing_credentials",
                "log in or send an API token (Authorization: Bearer …)",
            )),
        }
    }
}
