//! Proptest strategies for valid documents of every kind, and text forms of a value.

use std::collections::BTreeSet;

use dcloud_events::model::{
    DatasetCategory, DatasetDb, DatasetVersion, Endpoint, EnvironmentSpec, LanguageCatalog,
    LanguageSpec, LibraryCatalog, Lifecycle, OriginalMeta, PortPublish, Protocol, Resources,
    ServiceRegistration, StorageMount,
};
use dcloud_projections::config::Format;
use proptest::prelude::*;
use serde_json::Value;

pub fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._-]{0,20}"
}

pub fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._=+-]{1,12}"
}

pub fn text() -> impl Strategy<Value = String> {
    "\\PC{1,10}"
}

pub fn command() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._=/|&>-]{0,20}[a-zA-Z0-9]"
}

pub fn meta() -> impl Strategy<Value = OriginalMeta> {
    (
        proptest::option::of("[0-9a-fA-F]{24}"),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(oid, config_id, creation_time_ms, last_updation_time_ms)| OriginalMeta {
                oid,
                config_id,
                creation_time_ms,
                last_updation_time_ms,
            },
        )
}

pub fn category() -> impl Strategy<Value = DatasetCategory> {
    let version = (text(), text()).prop_map(|(name, version)| DatasetVersion { name, version });
    let db = (text(), prop::collection::vec(version, 1..3))
        .prop_map(|(name, datasets)| DatasetDb { name, datasets });
    (text(), prop::collection::vec(db, 1..3))
        .prop_map(|(category, dbs)| DatasetCategory { category, dbs })
}

pub fn ports() -> impl Strategy<Value = Vec<PortPublish>> {
    let protocol = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)];
    let port = (1..=u16::MAX, 1..=u16::MAX, protocol).prop_map(|(external, internal, protocol)| {
        PortPublish {
            external,
            internal,
            protocol,
        }
    });
    prop::collection::vec(port, 0..4).prop_map(|ports| {
        let mut seen = BTreeSet::new();
        ports
            .into_iter()
            .filter(|p| seen.insert((p.external, p.protocol)))
            .collect()
    })
}

pub fn storage() -> impl Strategy<Value = Vec<StorageMount>> {
    let lifecycle = prop_oneof![Just(Lifecycle::Temporary), Just(Lifecycle::Persistent)];
    let mount = (
        "/[a-z0-9_]{1,8}(/[a-z0-9_]{1,8}){0,2}",
        1..=u64::MAX,
        lifecycle,
    )
        .prop_map(|(target, size_bytes, lifecycle)| StorageMount {
            target,
            size_bytes,
            lifecycle,
        });
    prop::collection::vec(mount, 0..4).prop_map(|mounts| {
        let mut seen = BTreeSet::new();
        mounts
            .into_iter()
            .filter(|m| seen.insert(m.target.clone()))
            .collect()
    })
}

pub fn environment() -> impl Strategy<Value = EnvironmentSpec> {
    let language = (word(), prop::collection::vec(word(), 0..4))
        .prop_map(|(name, libraries)| LanguageSpec { name, libraries });
    let resources = (1..=u64::MAX, 1..=u64::MAX, any::<u32>(), any::<u64>()).prop_map(
        |(cpu_millis, memory_bytes, gpus, storage_bytes)| Resources {
            cpu_millis,
            memory_bytes,
            gpus,
            storage_bytes,
        },
    );
    let labels =
        prop::collection::btree_map("[a-z0-9][a-z0-9._/-]{0,10}", "[a-zA-Z0-9._-]{0,10}", 0..3);
    (
        (
            name(),
            "[a-zA-Z0-9 ._-]{0,10}",
            name(),
            prop::collection::vec(language, 0..3),
            resources,
        ),
        (
            prop::collection::vec(category(), 0..2),
            ports(),
            storage(),
            labels,
            any::<bool>(),
            meta(),
        ),
    )
        .prop_map(|((name, version_label, os, languages, resources), rest)| {
            let (datasets, ports, storage, node_labels, is_active, meta) = rest;
            EnvironmentSpec {
                name,
                version_label,
                os,
                languages,
                resources,
                datasets,
                ports,
                storage,
                node_labels,
                is_active,
                meta,
            }
        })
}

pub fn catalog() -> impl Strategy<Value = LibraryCatalog> {
    let image = "[a-z0-9]{1,8}(/[a-z0-9]{1,8})?(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,8})?";
    let commands = || prop::collection::vec(command(), 0..3);
    let language = (
        commands(),
        prop::collection::btree_map(word(), commands(), 0..3),
    )
        .prop_map(|(installation_steps, libraries)| LanguageCatalog {
            installation_steps,
            libraries,
        });
    (
        name(),
        proptest::option::of(image),
        commands(),
        prop::collection::btree_map(word(), language, 0..3),
        meta(),
    )
        .prop_map(
            |(os, base_image, init_steps, specifications, meta)| LibraryCatalog {
                os,
                base_image,
                init_steps,
                specifications,
                meta,
            },
        )
}

pub fn service() -> impl Strategy<Value = ServiceRegistration> {
    let endpoint = ("[a-z0-9.:/]{1,15}", 1..=u16::MAX).prop_map(|(ip, port)| Endpoint { ip, port });
    (
        name(),
        any::<bool>(),
        prop::collection::vec(endpoint, 1..4),
        proptest::option::of(1..=u64::MAX),
        meta(),
    )
        .prop_map(|(name, single, mut endpoints, ttl_ms, meta)| {
            if single {
                endpoints.truncate(1);
            }
            ServiceRegistration {
                name,
                endpoints,
                ttl_ms,
                single,
                meta,
            }
        })
}

/// The value written out as JSON text and as YAML text.
pub fn texts(value: &Value) -> [(String, Format); 2] {
    let json = serde_json::to_string(value).expect("json");
    let yaml = serde_norway::to_string(value).expect("yaml");
    [(json, Format::Json), (yaml, Format::Yaml)]
}
