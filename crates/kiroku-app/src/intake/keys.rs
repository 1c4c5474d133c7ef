//! Routing keys looked up, remembered for a few seconds: every intake
//! request names one, and most name the same few.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kiroku_domain::alert::Integration;

/// How long a routing key's integration is remembered between reads.
const TTL: Duration = Duration::from_secs(5);

/// Past this many keys the cache is emptied rather than grown: unknown
/// keys are remembered too, so that guessing cannot load the database.
const KEYS_MAX: usize = 10_000;

/// Lookups as of a count of integration changes, this node's and (heard
/// through `App::watch_other_nodes`) other nodes': when the count moves
/// they are forgotten, since a key may since have been replaced or
/// disabled, and a lookup begun before it moved is not remembered after.
#[derive(Default)]
pub(crate) struct KeyCache {
    changes: AtomicU64,
    found: Mutex<Found>,
}

#[derive(Default)]
struct Found {
    by_key: HashMap<String, (Option<Integration>, Instant)>,
    /// The change count `by_key` was read under.
    changes: u64,
}

/// Whether a lookup may be remembered (the change count it began under),
/// and what was remembered before it, if anything.
pub(crate) struct Lookup {
    changes: u64,
    last_read: Option<Option<Integration>>,
}

impl Lookup {
    /// What the key named when it was last read, however long ago: for
    /// when the store cannot be asked.
    pub(crate) fn last_read(&self) -> Option<Option<Integration>> {
        self.last_read.clone()
    }
}

impl KeyCache {
    /// An integration changed: what was looked up before may be stale.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The remembered answer for `key`, or the start of a lookup to hand
    /// to [`KeyCache::remember`] with what the store said. An answer past
    /// its time goes on being given to others for one more while this
    /// lookup is under way, so that they do not all ask the store at once,
    /// nor wait on it when it is away.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Integration>, Lookup> {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        let changes = self.changes.load(Ordering::SeqCst);
        if found.changes != changes {
            found.by_key.clear();
            found.changes = changes;
        }
        match found.by_key.get_mut(key) {
            Some((integration, at)) if at.elapsed() < TTL => Ok(integration.clone()),
            Some((integration, at)) => {
                *at = Instant::now();
                Err(Lookup {
                    changes,
                    last_read: Some(integration.clone()),
                })
            }
            None => Err(Lookup {
                changes,
                last_read: None,
            }),
        }
    }

    /// Forgets `key`, whose lookup failed: the next request reads it.
    pub(crate) fn forget(&self, key: &str) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        found.by_key.remove(key);
    }

    pub(crate) fn remember(&self, lookup: Lookup, key: &str, integration: &Option<Integration>) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        if self.changes.load(Ordering::SeqCst) != lookup.changes {
            return;
        }
        if found.by_key.len() >= KEYS_MAX {
            found.by_key.clear();
        }
        found
            .by_key
            .insert(key.to_string(), (integration.clone(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration() -> Integration {
        Integration {
            id: uuid::Uuid::nil(),
            service_id: uuid::Uuid::nil(),
            kind: kiroku_domain::alert::IntegrationKind::Generic,
            name: "monitoring".into(),
            key: "k".into(),
            rate_limit_per_second: 10,
            disabled: false,
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_lookup_is_remembered_until_an_integration_changes() {
        let cache = KeyCache::default();
        let lookup = cache.get("k").expect_err("nothing remembered yet");
        cache.remember(lookup, "k", &Some(integration()));
        assert_eq!(cache.get("k").ok(), Some(Some(integration())));
        cache.changed();
        assert!(cache.get("k").is_err(), "forgotten once a change is heard");
    }

    #[test]
    fn a_lookup_begun_before_a_change_is_not_remembered() {
        let cache = KeyCache::default();
        let lookup = cache.get("k").expect_err("nothing remembered yet");
        cache.changed();
        cache.remember(lookup, "k", &Some(integration()));
        assert!(cache.get("k").is_err());
    }

    #[test]
    fn an_answer_past_its_time_is_read_again_by_one_lookup_while_others_keep_it() {
        let cache = KeyCache::default();
        let lookup = cache.get("k").expect_err("nothing remembered yet");
        assert!(lookup.last_read().is_none());
        let lookup = cache.get("k").expect_err("nothing remembered yet");
        cache.remember(lookup, "k", &Some(integration()));
        cache.found.lock().unwrap().by_key.get_mut("k").unwrap().1 -= TTL;
        let lookup = cache.get("k").expect_err("past its time");
        assert_eq!(
            cache.get("k").ok(),
            Some(Some(integration())),
            "others keep it"
        );
        assert_eq!(lookup.last_read(), Some(Some(integration())));
        cache.forget("k");
        assert!(cache.get("k").is_err(), "forgotten after a failed lookup");
    }

    #[test]
    fn unknown_keys_are_remembered_within_a_bound() {
        let cache = KeyCache::default();
        for n in 0..=KEYS_MAX {
            let key = format!("guess-{n}");
            let lookup = cache.get(&key).expect_err("unknown");
            cache.remember(lookup, &key, &None);
        }
        assert_eq!(cache.get("guess-0").ok(), None, "emptied at the bound");
        assert_eq!(cache.get(&format!("guess-{KEYS_MAX}")).ok(), Some(None));
    }
}
