//! Services and their integrations, routing and maintenance windows; alert
//! and change-event queries.

use jiff::Timestamp;
use kiroku_domain::alert::routing::{MaintenanceWindow, Router, Routing};
use kiroku_domain::alert::{
    Alert, AlertStatus, DEFAULT_RATE_LIMIT_PER_SECOND, Integration, IntegrationKind,
    RATE_LIMIT_PER_SECOND_MAX, Service,
};
use kiroku_domain::{Operation, Permission, Target, validate};
use kiroku_store::{AlertQuery, ChangeRecord, PAGE_MAX, PageCursor, Tx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::credentials::new_routing_key;
use crate::{App, AppError, Caller, Result};

/// The longest maintenance window: a month.
const MAINTENANCE_MAX_DAYS: i64 = 31;
const MAINTENANCE_WINDOWS_MAX: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub routing: Option<Routing>,
}

/// What an admin may change of an integration; what is absent stays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// A disabled integration's routing key is refused as unknown.
    #[serde(default)]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIntegration {
    /// The service by id or name; created when no service has that name.
    pub service: String,
    /// `type`; `kind`, as answers name it, is read too.
    #[serde(rename = "type", alias = "kind")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMaintenanceWindow {
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct ListAlerts {
    pub statuses: Vec<String>,
    pub service: Option<String>,
    pub integration: Option<Uuid>,
    pub incident: Option<Uuid>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertList {
    pub items: Vec<Alert>,
    pub next_cursor: Option<String>,
}

fn service_target(s: &Service) -> Target {
    Target::new("service", Some(s.id.to_string()))
}

/// Has each of `services` whose routing names escalation policy `from`
/// name `to` instead, in `tx`, audited as `caller`'s routing change;
/// returns their ids, whose cached routing is stale once `tx` commits. A
/// policy's rename calls it, or those services' alerts would page through
/// the default policy.
pub(crate) async fn rename_routed_policy(
    tx: &mut dyn Tx,
    caller: &Caller,
    services: &[Service],
    from: &str,
    to: &str,
    now: Timestamp,
) -> Result<Vec<Uuid>> {
    let mut renamed = Vec::new();
    for before in services {
        // Only the services that name the policy are copied and written.
        let mut routing = before.routing.clone();
        if !routing.rename_policy(from, to) {
            continue;
        }
        let mut service = Service {
            routing,
            ..before.clone()
        };
        write_changed_service(tx, caller, "service_routing_set", before, &mut service, now).await?;
        renamed.push(service.id);
    }
    Ok(renamed)
}

/// Writes `service`, changed from `before` as it was read, in `tx`, under
/// optimistic locking, with `caller`'s audit event `action`.
async fn write_changed_service(
    tx: &mut dyn Tx,
    caller: &Caller,
    action: &str,
    before: &Service,
    service: &mut Service,
    now: Timestamp,
) -> Result<()> {
    service.version = before.version + 1;
    service.updated_at = now;
    tx.update_service(service, before.version)
        .await
        .map_err(crate::error::stale_or_taken("service"))?;
    tx.append_audit(
        &caller
            .event(now, Operation::Update, action, service_target(service))
            .with_change(Some(json!(before)), Some(json!(service))),
    )
    .await?;
    Ok(())
}

/// Checks a page size and decodes a cursor, as every newest-first list does.
pub(crate) fn page_request(
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<(i64, Option<PageCursor>)> {
    let limit = limit.unwrap_or(50);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            "out_of_range",
            format!("must be between 1 and {PAGE_MAX}"),
        ));
    }
    let after = cursor
        .map(|c| {
            PageCursor::decode(c).ok_or_else(|| {
                AppError::invalid(
                    "cursor",
                    "invalid_cursor",
                    "is not a cursor this server issued",
                )
            })
        })
        .transpose()?;
    Ok((limit, after))
}

/// Cuts a page fetched one row long and names the cursor of the next.
pub(crate) fn page_of<T>(
    mut items: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> PageCursor,
) -> (Vec<T>, Option<String>) {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        let next = items.last().map(|i| position(i).encode());
        (items, next)
    } else {
        (items, None)
    }
}

impl App {
    async fn service_by_key(&self, key: &str) -> Result<Service> {
        self.store
            .service(key)
            .await?
            .ok_or(AppError::NotFound { what: "service" })
    }

    async fn checked_routing(&self, routing: Routing) -> Result<Routing> {
        let router = Router::new(routing, &self.config.rules).map_err(|mut e| {
            e.field = format!("routing.{}", e.field);
            e
        })?;
        let routing = router.routing();
        // A policy that does not exist would page through the default one
        // without a word.
        let named = routing.named_policies();
        if named.is_empty() {
            return Ok(routing.clone());
        }
        let policies = self.store.escalation_policies().await?;
        for (field, name) in named {
            if !policies.iter().any(|p| p.name == name) {
                return Err(AppError::invalid(
                    &format!("routing.{field}"),
                    "unknown_value",
                    format!("no escalation policy is named {name:?}; create it first"),
                ));
            }
        }
        Ok(routing.clone())
    }

    pub async fn create_service(&self, caller: &Caller, input: NewService) -> Result<Service> {
        caller.require(Permission::ServiceManage)?;
        let now = self.now();
        let service = Service {
            id: Uuid::now_v7(),
            name: validate::line("name", &input.name, validate::SHORT_MAX, true)?,
            description: validate::text(
                "description",
                &input.description,
                validate::TEXT_MAX,
                false,
            )?,
            routing: self
                .checked_routing(input.routing.unwrap_or_default())
                .await?,
            maintenance: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if Uuid::parse_str(&service.name).is_ok() {
            return Err(AppError::invalid(
                "name",
                "invalid_value",
                "must not look like an id",
            ));
        }
        let mut tx = self.begin().await?;
        self.insert_service_in(&mut tx, caller, &service, now)
            .await?;
        tx.commit().await?;
        Ok(service)
    }

    async fn insert_service_in(
        &self,
        tx: &mut Box<dyn kiroku_store::Tx>,
        caller: &Caller,
        service: &Service,
        now: Timestamp,
    ) -> Result<()> {
        tx.insert_service(service)
            .await
            .map_err(crate::error::duplicate_of("service", "name"))?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    "service_create",
                    service_target(service),
                )
                .with_change(None, Some(json!(service))),
        )
        .await?;
        Ok(())
    }

    pub async fn services(&self, caller: &Caller) -> Result<Vec<Service>> {
        caller.require(Permission::IncidentRead)?;
        Ok(self.store.services().await?)
    }

    pub async fn service(&self, caller: &Caller, key: &str) -> Result<Service> {
        caller.require(Permission::IncidentRead)?;
        self.service_by_key(key).await
    }

    /// Applies `change` to a service under optimistic locking and audits it.
    async fn change_service(
        &self,
        caller: &Caller,
        key: &str,
        expected_version: Option<i64>,
        action: &str,
        change: impl FnOnce(&mut Service) -> Result<()>,
    ) -> Result<Service> {
        caller.require(Permission::ServiceManage)?;
        let now = self.now();
        let mut service = self.service_by_key(key).await?;
        if let Some(v) = expected_version
            && v != service.version
        {
            return Err(AppError::VersionConflict {
                what: "service",
                current: service.version,
            });
        }
        let before = service.clone();
        change(&mut service)?;
        let mut tx = self.begin().await?;
        write_changed_service(tx.as_mut(), caller, action, &before, &mut service, now).await?;
        tx.commit().await?;
        self.forget_routing(service.id);
        Ok(service)
    }

    pub async fn set_routing(
        &self,
        caller: &Caller,
        key: &str,
        routing: Routing,
        expected_version: Option<i64>,
    ) -> Result<Service> {
        let routing = self.checked_routing(routing).await?;
        self.change_service(caller, key, expected_version, "service_routing_set", |s| {
            s.routing = routing;
            Ok(())
        })
        .await
    }

    pub async fn add_maintenance_window(
        &self,
        caller: &Caller,
        key: &str,
        input: NewMaintenanceWindow,
    ) -> Result<(Service, MaintenanceWindow)> {
        let reason = validate::line("reason", &input.reason, validate::SHORT_MAX, false)?;
        if input.ends_at <= input.starts_at {
            return Err(AppError::invalid(
                "ends_at",
                "out_of_range",
                "must be after starts_at",
            ));
        }
        if input.ends_at.duration_since(input.starts_at)
            > jiff::SignedDuration::from_hours(24 * MAINTENANCE_MAX_DAYS)
        {
            return Err(AppError::invalid(
                "ends_at",
                "out_of_range",
                format!("a window lasts at most {MAINTENANCE_MAX_DAYS} days"),
            ));
        }
        let window = MaintenanceWindow {
            id: Uuid::now_v7(),
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            reason,
        };
        let now = self.now();
        let added = window.clone();
        let service = self
            .change_service(caller, key, None, "service_maintenance_add", move |s| {
                // Windows that have ended make room for new ones.
                s.maintenance.retain(|w| w.ends_at > now);
                if s.maintenance.len() >= MAINTENANCE_WINDOWS_MAX {
                    return Err(AppError::invalid(
                        "starts_at",
                        "too_many",
                        format!("a service has at most {MAINTENANCE_WINDOWS_MAX} windows"),
                    ));
                }
                s.maintenance.push(added);
                Ok(())
            })
            .await?;
        Ok((service, window))
    }

    pub async fn remove_maintenance_window(
        &self,
        caller: &Caller,
        key: &str,
        window: Uuid,
    ) -> Result<Service> {
        self.change_service(caller, key, None, "service_maintenance_remove", |s| {
            let before = s.maintenance.len();
            s.maintenance.retain(|w| w.id != window);
            if s.maintenance.len() == before {
                return Err(AppError::NotFound {
                    what: "maintenance window",
                });
            }
            Ok(())
        })
        .await
    }

    /// Creates an integration with a fresh routing key, and its service when
    /// no service has that name yet.
    pub async fn create_integration(
        &self,
        caller: &Caller,
        input: NewIntegration,
    ) -> Result<Integration> {
        caller.require(Permission::ServiceManage)?;
        let kind = IntegrationKind::parse(&input.kind).ok_or_else(|| {
            AppError::invalid(
                "type",
                "unknown_value",
                "must be one of: pagerduty, alertmanager, grafana, generic",
            )
        })?;
        let rate = checked_rate(
            input
                .rate_limit_per_second
                .unwrap_or(DEFAULT_RATE_LIMIT_PER_SECOND),
        )?;
        let name = match &input.name {
            Some(n) => integration_name(n)?,
            None => kind.as_str().to_string(),
        };
        let service_key = validate::line("service", &input.service, validate::SHORT_MAX, true)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let service = match self.store.service(&service_key).await? {
            Some(s) => s,
            None if Uuid::parse_str(&service_key).is_ok() => {
                return Err(AppError::NotFound { what: "service" });
            }
            None => {
                let s = Service {
                    id: Uuid::now_v7(),
                    name: service_key,
                    description: String::new(),
                    routing: Routing::default(),
                    maintenance: Vec::new(),
                    created_at: now,
                    updated_at: now,
                    version: 1,
                };
                self.insert_service_in(&mut tx, caller, &s, now).await?;
                s
            }
        };
        let integration = Integration {
            id: Uuid::now_v7(),
            service_id: service.id,
            kind,
            name,
            key: new_routing_key()?,
            rate_limit_per_second: rate,
            disabled: false,
            created_at: now,
        };
        tx.insert_integration(&integration).await?;
        // The key is a credential of sorts: the audit log names the
        // integration, never its key.
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    "integration_create",
                    Target::new("integration", Some(integration.id.to_string())),
                )
                .with_change(None, Some(integration_settings(&integration))),
        )
        .await?;
        tx.commit().await?;
        Ok(integration)
    }

    /// One integration; its key only for those who may manage it.
    pub async fn integration(&self, caller: &Caller, id: Uuid) -> Result<Integration> {
        caller.require(Permission::IncidentRead)?;
        let mut integration = self
            .store
            .integration(id)
            .await?
            .ok_or(AppError::NotFound {
                what: "integration",
            })?;
        hide_keys_from(caller, std::slice::from_mut(&mut integration));
        Ok(integration)
    }

    /// Renames an integration, changes its rate limit, or disables it
    /// (its routing key then refused as unknown) or enables it again.
    pub async fn update_integration(
        &self,
        caller: &Caller,
        id: Uuid,
        change: IntegrationChange,
    ) -> Result<Integration> {
        caller.require(Permission::ServiceManage)?;
        let name = change.name.as_deref().map(integration_name).transpose()?;
        let rate = change.rate_limit_per_second.map(checked_rate).transpose()?;
        self.change_integration(caller, id, "integration_update", |i| {
            if let Some(name) = name {
                i.name = name;
            }
            if let Some(rate) = rate {
                i.rate_limit_per_second = rate;
            }
            if let Some(disabled) = change.disabled {
                i.disabled = disabled;
            }
        })
        .await
    }

    /// Gives an integration a new routing key; the old one is refused from
    /// then on, by every node (`KeyCache::changed`).
    pub async fn rotate_integration_key(&self, caller: &Caller, id: Uuid) -> Result<Integration> {
        caller.require(Permission::ServiceManage)?;
        let key = new_routing_key()?;
        self.change_integration(caller, id, "integration_key_rotate", |i| i.key = key)
            .await
    }

    /// Changes an integration under its row lock, with an audit event
    /// holding its settings before and after, never its key.
    async fn change_integration(
        &self,
        caller: &Caller,
        id: Uuid,
        action: &str,
        change: impl FnOnce(&mut Integration),
    ) -> Result<Integration> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut integration = tx
            .integration_for_update(id)
            .await?
            .ok_or(AppError::NotFound {
                what: "integration",
            })?;
        let original = integration.clone();
        change(&mut integration);
        // Nothing changed: nothing to write or audit, as with an incident.
        if integration == original {
            return Ok(integration);
        }
        tx.update_integration(&integration).await?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Update,
                    action,
                    Target::new("integration", Some(id.to_string())),
                )
                .with_change(
                    Some(integration_settings(&original)),
                    Some(integration_settings(&integration)),
                ),
        )
        .await?;
        tx.commit().await?;
        // Other nodes hear of it through the commit's notice.
        self.routing_keys.changed();
        Ok(integration)
    }

    /// Integrations; their keys only for those who may manage them.
    pub async fn integrations(
        &self,
        caller: &Caller,
        service: Option<&str>,
    ) -> Result<Vec<Integration>> {
        caller.require(Permission::IncidentRead)?;
        let service = match service {
            Some(k) => Some(self.service_by_key(k).await?.id),
            None => None,
        };
        let mut list = self.store.integrations(service).await?;
        hide_keys_from(caller, &mut list);
        Ok(list)
    }

    /// The integration a routing key names, if it may send; remembered
    /// for a few seconds, or until an integration changes.
    pub async fn integration_by_key(&self, key: &str) -> Result<Option<Integration>> {
        let lookup = match self.routing_keys.get(key) {
            Ok(found) => return Ok(found),
            Err(lookup) => lookup,
        };
        let last_read = lookup.last_read();
        let (store, key) = (self.store.clone(), key.to_string());
        let (remembering, forgetting) = (self.routing_keys.clone(), self.routing_keys.clone());
        let (remembered, forgotten) = (key.clone(), key.clone());
        crate::intake::read_again(
            "routing key",
            last_read,
            self.intake_while_away(),
            async move {
                let found = store.integration_by_key(&key).await?;
                Ok(found.filter(|i| !i.disabled))
            },
            move |found| remembering.remember(lookup, &remembered, found),
            move || forgetting.forget(&forgotten),
        )
        .await
    }

    pub async fn list_alerts(&self, caller: &Caller, q: ListAlerts) -> Result<AlertList> {
        caller.require(Permission::IncidentRead)?;
        let (limit, after) = page_request(q.limit, q.cursor.as_deref())?;
        let statuses = q
            .statuses
            .iter()
            .map(|s| {
                AlertStatus::parse(s).ok_or_else(|| {
                    AppError::invalid(
                        "status",
                        "unknown_value",
                        "must be one of: triggered, acknowledged, resolved",
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let service_id = match &q.service {
            Some(k) => Some(self.service_by_key(k).await?.id),
            None => None,
        };
        let items = self
            .store
            .alerts(&AlertQuery {
                statuses,
                service_id,
                integration_id: q.integration,
                incident_id: q.incident,
                after,
                limit: limit + 1,
            })
            .await?;
        let (items, next_cursor) = page_of(items, limit, |a| PageCursor {
            at: a.first_seen_at,
            id: a.id,
        });
        Ok(AlertList { items, next_cursor })
    }

    pub async fn alert(&self, caller: &Caller, id: Uuid) -> Result<Alert> {
        caller.require(Permission::IncidentRead)?;
        self.store
            .alert(id)
            .await?
            .ok_or(AppError::NotFound { what: "alert" })
    }

    pub async fn service_changes(&self, caller: &Caller, key: &str) -> Result<Vec<ChangeRecord>> {
        caller.require(Permission::IncidentRead)?;
        let service = self.service_by_key(key).await?;
        Ok(self.store.service_changes(service.id, PAGE_MAX).await?)
    }
}

/// What the audit log keeps of an integration: everything but the key,
/// which is a credential of sorts.
fn integration_settings(i: &Integration) -> serde_json::Value {
    json!({
        "service_id": i.service_id,
        "type": i.kind,
        "name": i.name,
        "rate_limit_per_second": i.rate_limit_per_second,
        "disabled": i.disabled,
    })
}

fn integration_name(name: &str) -> Result<String> {
    Ok(validate::line("name", name, validate::SHORT_MAX, true)?)
}

fn checked_rate(rate: u32) -> Result<u32> {
    if !(1..=RATE_LIMIT_PER_SECOND_MAX).contains(&rate) {
        return Err(AppError::invalid(
            "rate_limit_per_second",
            "out_of_range",
            format!("must be between 1 and {RATE_LIMIT_PER_SECOND_MAX}"),
        ));
    }
    Ok(rate)
}

/// A routing key is a credential: only those who may manage integrations
/// see it.
fn hide_keys_from(caller: &Caller, integrations: &mut [Integration]) {
    if caller.require(Permission::ServiceManage).is_err() {
        for i in integrations {
            i.key.clear();
        }
    }
}
