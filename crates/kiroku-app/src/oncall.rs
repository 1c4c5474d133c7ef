//! People on call: their contact methods, the schedules that say who is
//! on call when, and acknowledging a page from wherever it reached them
//! (a signed link, a text reply).

use jiff::{SignedDuration, Timestamp};
use kiroku_domain::alert::AlertLevel;
use std::collections::HashSet;

use kiroku_domain::notify::{Channel, ChannelKind};
use kiroku_domain::schedule::{Override, Schedule, ScheduleDraft, Shift};
use kiroku_domain::{Operation, Permission, Role, Source, Target, validate};
use kiroku_store::{IncidentKey, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::caller::Principal;
use crate::escalation::AckOutcome;
use crate::links::{Link, LinkError};
use crate::notify::{ChannelView, NewChannel};
use crate::{App, AppError, Caller, Result, Via};

/// A person's way of being reached, and its notification rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewContactMethod {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `mailto:`, `tel:` or a webhook URL.
    pub address: String,
    /// The alert levels it is used for (seed 004 defaults by type).
    #[serde(default)]
    pub levels: Option<Vec<AlertLevel>>,
    /// Minutes after its owner is paged that it is tried.
    #[serde(default)]
    pub delay_minutes: u32,
    /// At most this many messages a minute (default 60).
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

pub type ContactMethodView = ChannelView;

/// An override of a schedule: someone else on call for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    /// A user's name or id.
    pub user: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Who is on call, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OnCall {
    pub schedule: String,
    pub at: Timestamp,
    pub user: Option<String>,
    pub shift: Option<Shift>,
    /// The layer's name, or `override`.
    pub source: Option<String>,
}

/// What a calendar shows.
enum Feed {
    /// A schedule, for one person when given.
    Schedule(Uuid, Option<Uuid>),
    /// One person across every schedule.
    Person(Uuid),
}

/// The longest wait a notification rule may have.
const RULE_DELAY_MAX: u32 = 1_440;

impl App {
    /// The user named, if the caller may manage their contact methods:
    /// their own with [`Permission::OwnContactMethods`], anyone's as an
    /// administrator.
    async fn contact_owner(&self, caller: &Caller, name: &str) -> Result<UserRecord> {
        let user = self
            .store
            .user_by_name(name)
            .await?
            .ok_or(AppError::NotFound { what: "user" })?;
        if caller.user().is_some_and(|me| me.id == user.id) {
            caller.require(Permission::OwnContactMethods)?;
        } else {
            caller.require(Permission::UserManage)?;
        }
        Ok(user)
    }

    pub async fn add_contact_method(
        &self,
        caller: &Caller,
        user: &str,
        input: NewContactMethod,
    ) -> Result<ContactMethodView> {
        let owner = self.contact_owner(caller, user).await?;
        let label = validate::line("label", &input.label, 60, true)?;
        if input.delay_minutes > RULE_DELAY_MAX {
            return Err(AppError::invalid(
                "delay_minutes",
                "out_of_range",
                format!("must be 0 to {RULE_DELAY_MAX}"),
            ));
        }
        let channel = self.checked_channel(
            NewChannel {
                name: format!("@{}/{label}", owner.name),
                kind: input.kind,
                url: input.address,
                secret: None,
                levels: input.levels,
                rate_per_minute: input.rate_per_minute,
            },
            "address",
        )?;
        // People reach themselves; arbitrary webhooks are an administrator's.
        if channel.kind == ChannelKind::Webhook
            && !caller.user().is_none_or(|u| u.role == Role::Admin)
        {
            return Err(AppError::invalid(
                "type",
                "not_allowed",
                "only administrators add webhook contact methods; use email, sms, voice, slack or teams",
            ));
        }
        let channel = Channel {
            owner: Some(owner.id),
            delay_minutes: input.delay_minutes,
            ..channel
        };
        // A text reply names its sender by number: one person's only.
        if channel.kind == ChannelKind::Sms
            && self.store.channels().await?.iter().any(|c| {
                c.kind == ChannelKind::Sms
                    && c.removed_at.is_none()
                    && c.url == channel.url
                    && c.owner != Some(owner.id)
            })
        {
            return Err(AppError::Duplicate {
                what: "SMS number of another person",
                field: "address",
            });
        }
        self.insert_channel(caller, channel)
            .await
            .map_err(|e| match e {
                AppError::Duplicate { what, .. } => AppError::Duplicate {
                    what,
                    field: "label",
                },
                other => other,
            })
    }

    pub async fn contact_methods(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Vec<ContactMethodView>> {
        let owner = self.contact_owner(caller, user).await?;
        Ok(self
            .store
            .channels()
            .await?
            .iter()
            .filter(|c| c.is_method_of(owner.id))
            .map(ChannelView::from)
            .collect())
    }

    pub async fn remove_contact_method(
        &self,
        caller: &Caller,
        user: &str,
        id: Uuid,
    ) -> Result<ContactMethodView> {
        let owner = self.contact_owner(caller, user).await?;
        let method = self
            .store
            .channels()
            .await?
            .into_iter()
            .find(|c| c.id == id && c.is_method_of(owner.id))
            .ok_or(AppError::NotFound {
                what: "contact method",
            })?;
        self.retire_channel(caller, method, "contact_method_remove")
            .await
    }

    /// A user's id from their name or id.
    async fn user_id(&self, field: &str, name_or_id: &str) -> Result<Uuid> {
        let found = match Uuid::parse_str(name_or_id) {
            Ok(id) => self.store.user(id).await?,
            Err(_) => self.store.user_by_name(name_or_id).await?,
        };
        match found {
            Some(u) if !u.disabled => Ok(u.id),
            _ => Err(AppError::invalid(
                field,
                "unknown_user",
                format!("{name_or_id:?} is no active user"),
            )),
        }
    }

    /// A schedule draft with people named by name or id: names become ids.
    async fn schedule_draft(&self, mut body: Value) -> Result<ScheduleDraft> {
        if let Some(layers) = body.get_mut("layers").and_then(Value::as_array_mut) {
            for (i, layer) in layers.iter_mut().enumerate() {
                if let Some(members) = layer.get_mut("members").and_then(Value::as_array_mut) {
                    for (j, m) in members.iter_mut().enumerate() {
                        if let Some(name) = m.as_str() {
                            let id = self
                                .user_id(&format!("layers[{i}].members[{j}]"), name)
                                .await?;
                            *m = json!(id);
                        }
                    }
                }
            }
        }
        if let Some(overrides) = body.get_mut("overrides").and_then(Value::as_array_mut) {
            for (i, o) in overrides.iter_mut().enumerate() {
                if let Some(user) = o.get_mut("user")
                    && let Some(name) = user.as_str()
                {
                    *user = json!(self.user_id(&format!("overrides[{i}].user"), name).await?);
                }
            }
        }
        serde_json::from_value(body).map_err(|e| {
            AppError::invalid("body", "invalid_schedule", format!("not a schedule: {e}"))
        })
    }

    pub async fn create_schedule(&self, caller: &Caller, body: Value) -> Result<Schedule> {
        caller.require(Permission::ServiceManage)?;
        let draft = self.schedule_draft(body).await?;
        let now = self.now();
        let schedule = draft.validated(Uuid::now_v7, now)?;
        let mut tx = self.begin().await?;
        tx.insert_schedule(&schedule)
            .await
            .map_err(crate::error::duplicate_of("schedule", "name"))?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Create,
                    "schedule_create",
                    Target::new("schedule", Some(schedule.id.to_string())),
                )
                .with_change(None, Some(json!(schedule))),
        )
        .await?;
        tx.commit().await?;
        self.escalator.forget();
        Ok(schedule)
    }

    pub async fn schedules(&self, caller: &Caller) -> Result<Vec<Schedule>> {
        caller.require(Permission::IncidentRead)?;
        Ok(self.store.schedules().await?)
    }

    pub async fn schedule(&self, caller: &Caller, key: &str) -> Result<Schedule> {
        caller.require(Permission::IncidentRead)?;
        self.store
            .schedule(key)
            .await?
            .ok_or(AppError::NotFound { what: "schedule" })
    }

    /// Changes a schedule by `change`, with its audit event, against the
    /// version read.
    async fn change_schedule(
        &self,
        caller: &Caller,
        key: &str,
        action: &str,
        change: impl FnOnce(&mut Schedule) -> Result<()>,
    ) -> Result<Schedule> {
        caller.require(Permission::ServiceManage)?;
        let before = self.schedule(caller, key).await?;
        let mut after = before.clone();
        change(&mut after)?;
        let now = self.now();
        after.version = before.version + 1;
        after.updated_at = now;
        let mut tx = self.begin().await?;
        tx.update_schedule(&after, before.version)
            .await
            .map_err(crate::error::stale_or_taken("schedule"))?;
        tx.append_audit(
            &caller
                .event(
                    now,
                    Operation::Update,
                    action,
                    Target::new("schedule", Some(after.id.to_string())),
                )
                .with_change(
                    Some(json!({ "overrides": before.overrides })),
                    Some(json!({ "overrides": after.overrides })),
                ),
        )
        .await?;
        tx.commit().await?;
        self.escalator.forget();
        Ok(after)
    }

    pub async fn add_override(
        &self,
        caller: &Caller,
        key: &str,
        input: NewOverride,
    ) -> Result<Schedule> {
        let user = self.user_id("user", &input.user).await?;
        let o = Override {
            id: Uuid::now_v7(),
            user,
            start: input.start,
            end: input.end,
        };
        self.change_schedule(caller, key, "schedule_override_add", |s| {
            Ok(s.add_override(o)?)
        })
        .await
    }

    pub async fn remove_override(&self, caller: &Caller, key: &str, id: Uuid) -> Result<Schedule> {
        self.change_schedule(caller, key, "schedule_override_remove", |s| {
            if s.remove_override(id) {
                Ok(())
            } else {
                Err(AppError::NotFound { what: "override" })
            }
        })
        .await
    }

    pub async fn oncall(
        &self,
        caller: &Caller,
        key: &str,
        at: Option<Timestamp>,
    ) -> Result<OnCall> {
        let s = self.schedule(caller, key).await?;
        let at = at.unwrap_or_else(|| self.now());
        let shift = s.oncall(at);
        let user = match &shift {
            Some(sh) => self.store.user(sh.user).await?.map(|u| u.name),
            None => None,
        };
        Ok(OnCall {
            schedule: s.name.clone(),
            at,
            user,
            source: shift.as_ref().map(|sh| s.source_of(sh).to_string()),
            shift,
        })
    }

    pub async fn shifts(
        &self,
        caller: &Caller,
        key: &str,
        from: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<Shift>> {
        let s = self.schedule(caller, key).await?;
        let from = from.unwrap_or_else(|| self.now());
        let until = until.unwrap_or(from + SignedDuration::from_hours(24 * 28));
        if until <= from {
            return Err(AppError::invalid("until", "invalid", "must be after from"));
        }
        Ok(s.shifts(from, until))
    }

    /// A calendar from a week ago to 90 days ahead: one schedule's (for
    /// one person when given), or one person's across every schedule.
    async fn calendar(&self, feed: &Feed) -> Result<String> {
        let now = self.now();
        let users = self.store.users().await?;
        let name_of = |id: Uuid| match users.iter().find(|u| u.id == id) {
            Some(u) if !u.display_name.is_empty() => u.display_name.clone(),
            Some(u) => u.name.clone(),
            None => id.to_string(),
        };
        let (from, until) = (
            now - SignedDuration::from_hours(24 * 7),
            now + SignedDuration::from_hours(24 * 90),
        );
        let schedules = match feed {
            Feed::Schedule(id, _) => vec![
                self.store
                    .schedule(&id.to_string())
                    .await?
                    .ok_or(AppError::NotFound { what: "schedule" })?,
            ],
            Feed::Person(_) => self.store.schedules().await?,
        };
        let person = match feed {
            Feed::Schedule(_, person) => *person,
            Feed::Person(id) => Some(*id),
        };
        let shifts: Vec<(&Schedule, Shift)> = schedules
            .iter()
            .flat_map(|s| s.shifts(from, until).into_iter().map(move |sh| (s, sh)))
            .filter(|(_, sh)| person.is_none_or(|p| sh.user == p))
            .collect();
        let (name, zone) = match feed {
            Feed::Schedule(..) => (schedules[0].name.clone(), schedules[0].time_zone.clone()),
            Feed::Person(id) => (
                format!("On call: {}", name_of(*id)),
                self.config
                    .time_zone
                    .iana_name()
                    .unwrap_or("UTC")
                    .to_string(),
            ),
        };
        Ok(kiroku_domain::schedule::ical(
            &name,
            &zone,
            shifts.iter().map(|(s, sh)| (*s, sh)),
            name_of,
            now,
        ))
    }

    /// What a calendar request names: a schedule (and maybe one person in
    /// it), or a person across every schedule.
    async fn feed(
        &self,
        caller: &Caller,
        schedule: Option<&str>,
        user: Option<&str>,
    ) -> Result<Feed> {
        caller.require(Permission::IncidentRead)?;
        let person = match user {
            Some(u) => Some(self.user_id("user", u).await?),
            None => None,
        };
        match (schedule, person) {
            (Some(key), person) => Ok(Feed::Schedule(self.schedule(caller, key).await?.id, person)),
            (None, Some(person)) => Ok(Feed::Person(person)),
            (None, None) => Err(AppError::invalid(
                "user",
                "required",
                "name a schedule or a person",
            )),
        }
    }

    /// The calendar of a schedule (`user` narrows it to one person) or,
    /// without a schedule, of one person across every schedule.
    pub async fn calendar_of(
        &self,
        caller: &Caller,
        schedule: Option<&str>,
        user: Option<&str>,
    ) -> Result<String> {
        let feed = self.feed(caller, schedule, user).await?;
        self.calendar(&feed).await
    }

    /// A calendar feed URL that needs no login (calendar apps cannot send
    /// one): signed, for what `calendar_of` would show.
    pub async fn calendar_feed(
        &self,
        caller: &Caller,
        schedule: Option<&str>,
        user: Option<&str>,
    ) -> Result<String> {
        let feed = self.feed(caller, schedule, user).await?;
        let (Some(base), Some(link_key)) = (
            self.config.notify.public_url.as_deref(),
            self.config.notify.link_key.as_ref(),
        ) else {
            return Err(AppError::invalid(
                "public_url",
                "not_configured",
                "set [notify] public_url so that Kiroku can make links to itself",
            ));
        };
        // A feed works while whoever made it may still read schedules.
        let by = caller.user().map(|u| u.id);
        let link = match feed {
            Feed::Schedule(subject, person) => Link {
                purpose: "ical".into(),
                subject,
                person,
                expires: None,
                by,
            },
            Feed::Person(person) => Link {
                purpose: "ical-person".into(),
                subject: person,
                person: Some(person),
                expires: None,
                by,
            },
        };
        Ok(format!(
            "{}/ical/{}",
            base.trim_end_matches('/'),
            link_key.sign(&link)
        ))
    }

    fn verified(&self, token: &str, purpose: &str) -> Result<Link> {
        let key = self
            .config
            .notify
            .link_key
            .as_ref()
            .ok_or(AppError::unauthenticated(
                "invalid_link",
                "this server makes no links",
            ))?;
        key.verify(token, purpose, self.now()).map_err(|e| match e {
            LinkError::Invalid => AppError::unauthenticated(
                "invalid_link",
                "the link is not one Kiroku made, or it was altered",
            ),
            LinkError::Expired => AppError::unauthenticated(
                "link_expired",
                "the link has expired; use the one in a newer message, or the app",
            ),
        })
    }

    /// The calendar a signed feed link names.
    pub async fn calendar_by_link(&self, token: &str) -> Result<String> {
        let (link, feed) = match self.verified(token, "ical") {
            Ok(link) => {
                let feed = Feed::Schedule(link.subject, link.person);
                (link, feed)
            }
            Err(_) => {
                let link = self.verified(token, "ical-person")?;
                let feed = Feed::Person(link.subject);
                (link, feed)
            }
        };
        if let Some(maker) = link.by {
            let allowed = self
                .store
                .user(maker)
                .await?
                .is_some_and(|u| !u.disabled && u.role.allows(Permission::IncidentRead));
            if !allowed {
                return Err(AppError::unauthenticated(
                    "invalid_link",
                    "the person who made this feed may no longer read schedules",
                ));
            }
        }
        self.calendar(&feed).await
    }

    /// The caller a signed link or a text reply stands for.
    async fn link_caller(&self, person: Option<Uuid>, source: Source) -> Result<Caller> {
        let user = match person {
            Some(id) => Some(self.store.user(id).await?.filter(|u| !u.disabled).ok_or(
                AppError::unauthenticated(
                    "invalid_link",
                    "the link was made for a user who is no longer active",
                ),
            )?),
            None => None,
        };
        let named = user.is_some();
        let caller = Caller {
            principal: Some(Principal {
                user,
                via: Via::Link,
            }),
            source,
        };
        // A person's link acts with their role (a viewer, or someone
        // demoted since, cannot acknowledge); a shared channel's link is
        // the credential itself, like the page it came in.
        if named {
            caller.require(Permission::IncidentWrite)?;
        }
        Ok(caller)
    }

    /// What an acknowledgement link is for, without acting on it (the
    /// page a click opens, which asks to confirm, so that link previews
    /// acknowledge nothing).
    pub async fn ack_link_incident(&self, token: &str) -> Result<(String, String)> {
        let link = self.verified(token, "ack")?;
        let incident = self
            .store
            .incident(&IncidentKey::Id(link.subject))
            .await?
            .ok_or(AppError::NotFound { what: "incident" })?;
        Ok((incident.number, incident.title))
    }

    pub async fn acknowledge_by_link(
        &self,
        token: &str,
        source: Source,
    ) -> Result<(String, AckOutcome)> {
        let link = self.verified(token, "ack")?;
        let caller = self.link_caller(link.person, source).await?;
        self.acknowledge_page(&caller, &IncidentKey::Id(link.subject), "from a link")
            .await
    }

    /// A text reply to a page: `ACK <incident number>` from the number of
    /// one of a person's contact methods. Returns what to reply.
    pub async fn acknowledge_by_text(
        &self,
        from: &str,
        body: &str,
        source: Source,
    ) -> Result<String> {
        let words: Vec<&str> = body.split_whitespace().collect();
        let code = match words.as_slice() {
            [verb, code] if verb.eq_ignore_ascii_case("ack") => code.to_uppercase(),
            _ => return Ok("Reply ACK and the incident number, e.g. ACK DB-2026-001.".into()),
        };
        let number = kiroku_domain::notify::checked_phone("From", &format!("tel:{from}"))?;
        let owners: HashSet<Uuid> = self
            .store
            .channels()
            .await?
            .into_iter()
            .filter(|c| c.kind == ChannelKind::Sms && c.removed_at.is_none() && c.url == number)
            .filter_map(|c| c.owner)
            .collect();
        let owner = match owners.len() {
            1 => owners.into_iter().next().expect("one owner"),
            0 => {
                return Err(AppError::unauthenticated(
                    "unknown_sender",
                    "the number is no one's SMS contact method",
                ));
            }
            _ => {
                return Err(AppError::unauthenticated(
                    "ambiguous_sender",
                    "the number is the SMS contact method of more than one person",
                ));
            }
        };
        let caller = self.link_caller(Some(owner), source).await?;
        match self
            .acknowledge_page(&caller, &IncidentKey::Number(code.clone()), "by text reply")
            .await
        {
            Ok((n, AckOutcome::Acknowledged)) => Ok(format!("{n} acknowledged.")),
            Ok((n, AckOutcome::AlreadyAcknowledged)) => {
                Ok(format!("{n} was already acknowledged."))
            }
            Ok((n, AckOutcome::AlreadyResolved)) => Ok(format!("{n} is already resolved.")),
            Err(AppError::NotFound { .. }) => Ok(format!("No incident {code}.")),
            Err(e) => Err(e),
        }
    }
}
