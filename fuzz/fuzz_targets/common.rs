#![allow(dead_code)]
//! A one-instance snapshot the targets put what they fuzz into, so the
//! engine decides on it as the leader would.

use serde_json::{json, Value};

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_795_694_400).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

pub fn snapshot() -> Value {
    json!({
        "cluster": {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "default"},
            "spec": {"instances": 1, "storage": {"size": "1Gi", "resize": {"enabled": true,
                "expansion": {"step": "20%", "limit": "10Gi"},
                "strategy": {"maxActionsPerDay": 3, "walSafetyPolicy": {"acknowledgeWALRisk": true}}}}}},
        "pvcs": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "pg-1", "labels": {"cnpg.io/cluster": "pg",
                "cnpg.io/instanceName": "pg-1", "cnpg.io/pvcRole": "PG_DATA"}},
            "spec": {"resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}],
        "instances": {"pg-1": {"ageSeconds": 0, "data": {"totalBytes": 1_000_000_000u64,
            "usedBytes": 900_000_000u64, "availableBytes": 100_000_000u64,
            "inodesTotal": 1000, "inodesUsed": 10, "inodesFree": 990}}}
    })
}
