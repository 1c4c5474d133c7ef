//! Messages a change leaves for delivery after it commits.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: Uuid,
    /// What happened, e.g. `incident.declared`; channels subscribe by topic.
    pub topic: String,
    /// Receivers deduplicate on this; it is stable across retries.
    pub idempotency_key: String,
    pub payload: Value,
    pub created_at: Timestamp,
}

impl OutboxMessage {
    pub fn new(topic: &str, idempotency_key: String, payload: Value, at: Timestamp) -> Self {
        OutboxMessage {
            id: Uuid::now_v7(),
            topic: topic.into(),
            idempotency_key,
            payload,
            created_at: at,
        }
    }
}
