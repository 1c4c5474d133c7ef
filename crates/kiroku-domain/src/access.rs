//! Roles and the permission matrix.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Responder,
    Viewer,
    Auditor,
    /// Another application's service account: sends audit events, nothing else.
    Application,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See incidents and their timelines.
    IncidentRead,
    /// Declare incidents, move them, add notes, record impact.
    IncidentWrite,
    /// Read the audit log.
    AuditRead,
    /// Create users and manage everyone's tokens.
    UserManage,
    /// Create and revoke one's own API tokens.
    OwnTokens,
    /// Send audit events from another application.
    AuditIngest,
    /// Create services and integrations, set routing and maintenance windows.
    ServiceManage,
    /// Set one's own contact methods and notification rules (who is paged
    /// must be reachable).
    OwnContactMethods,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Responder,
        Role::Viewer,
        Role::Auditor,
        Role::Application,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Responder => "responder",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Application => "application",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permission matrix. Auditors read everything but change nothing;
    /// viewers cannot read the audit log; only admins manage users;
    /// only admins configure services and integrations; applications only
    /// send audit events.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Responder => {
                matches!(
                    p,
                    IncidentRead | IncidentWrite | OwnTokens | OwnContactMethods
                )
            }
            Role::Viewer => matches!(p, IncidentRead | OwnTokens),
            Role::Auditor => matches!(p, IncidentRead | AuditRead | OwnTokens),
            Role::Application => matches!(p, AuditIngest),
        }
    }
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::IncidentRead,
        Permission::IncidentWrite,
        Permission::AuditRead,
        Permission::UserManage,
        Permission::OwnTokens,
        Permission::AuditIngest,
        Permission::ServiceManage,
        Permission::OwnContactMethods,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::IncidentRead => "incident_read",
            Permission::IncidentWrite => "incident_write",
            Permission::AuditRead => "audit_read",
            Permission::UserManage => "user_manage",
            Permission::OwnTokens => "own_tokens",
            Permission::AuditIngest => "audit_ingest",
            Permission::ServiceManage => "service_manage",
            Permission::OwnContactMethods => "own_contact_methods",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_cell_by_cell() {
        // Columns in the order of Permission::ALL: incident read, incident
        // write, audit read, user manage, own tokens, audit ingest, service
        // manage, own contact methods.
        let expected: [(Role, [bool; 8]); 5] = [
            (
                Role::Admin,
                [true, true, true, true, true, true, true, true],
            ),
            (
                Role::Responder,
                [true, true, false, false, true, false, false, true],
            ),
            (
                Role::Viewer,
                [true, false, false, false, true, false, false, false],
            ),
            (
                Role::Auditor,
                [true, false, true, false, true, false, false, false],
            ),
            (
                Role::Application,
                [false, false, false, false, false, true, false, false],
            ),
        ];
        for (role, row) in expected {
            for (p, want) in Permission::ALL.into_iter().zip(row) {
                assert_eq!(role.allows(p), want, "{role:?} {p:?}");
            }
        }
    }
}
