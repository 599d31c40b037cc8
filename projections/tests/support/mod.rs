//! Given/when/then helpers for command tests: a world that wraps events into envelopes
//! with increasing sequence numbers, plus small fixtures (catalog, specs, nodes, actors).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use dcloud_events::model::EnvironmentSpec;
use dcloud_events::model::{
    GpuDevice, LanguageCatalog, LanguageSpec, LibraryCatalog, NodeFingerprint, PortPublish,
    Protocol, Resources, Role, Usage,
};
use dcloud_events::{Envelope, Event, GENESIS_HASH, SCHEMA_VERSION};
use dcloud_projections::{decide, Actor, Command, Ctx, DomainError, Settings, State};

pub const GIB: u64 = 1 << 30;

/// Wraps `event` as the envelope with sequence number `seq`.
pub fn envelope(seq: u64, time_ms: i64, event: Event) -> Envelope {
    Envelope {
        seq,
        time_ms,
        actor: "test".into(),
        correlation: format!("c{seq}"),
        schema: SCHEMA_VERSION,
        prev_hash: GENESIS_HASH,
        hash: GENESIS_HASH,
        event,
    }
}

/// The state, its log so far and a clock.
pub struct World {
    pub state: State,
    pub log: Vec<Envelope>,
    pub now: i64,
    pub settings: Settings,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        World {
            state: State::new(),
            log: Vec::new(),
            now: 1_000_000,
            settings: Settings::default(),
        }
    }

    /// A world with the ubuntu catalog.
    pub fn with_catalog() -> World {
        let mut w = World::new();
        w.given([Event::CatalogUpserted { catalog: catalog() }]);
        w
    }

    /// Appends and applies `events`, as the writer does.
    pub fn given(&mut self, events: impl IntoIterator<Item = Event>) {
        for event in events {
            let env = envelope(self.state.last_seq() + 1, self.now, event);
            self.state.apply(&env);
            self.log.push(env);
        }
    }

    pub fn ctx(&self, actor: &Actor) -> Ctx {
        Ctx {
            now_ms: self.now,
            actor: actor.clone(),
            settings: std::sync::Arc::new(self.settings.clone()),
        }
    }

    /// Decides only.
    pub fn when(&self, actor: &Actor, cmd: Command) -> Result<Vec<Event>, DomainError> {
        decide(&self.state, &cmd, &self.ctx(actor))
    }

    /// Decides, applies what was decided, and checks the invariants.
    #[track_caller]
    pub fn run(&mut self, actor: &Actor, cmd: Command) -> Result<Vec<Event>, DomainError> {
        let events = self.when(actor, cmd)?;
        self.given(events.clone());
        if let Err(e) = self.state.check_invariants() {
            panic!("invariant broken: {e}");
        }
        Ok(events)
    }

    #[track_caller]
    pub fn ok(&mut self, actor: &Actor, cmd: Command) -> Vec<Event> {
        match self.run(actor, cmd) {
            Ok(events) => events,
            Err(e) => panic!("refused: {e}"),
        }
    }

    pub fn add_node(&mut self, id: &str, fingerprint: NodeFingerprint) -> Vec<Event> {
        self.ok(
            &admin(),
            Command::RegisterNode {
                node_id: id.into(),
                fingerprint,
            },
        )
    }

    pub fn add_env(&mut self, id: &str, owner: &Actor, spec: EnvironmentSpec) {
        self.ok(
            owner,
            Command::CreateEnvironment {
                env_id: id.into(),
                spec,
            },
        );
    }

    pub fn deploy(&mut self, owner: &Actor, dep: &str, env: &str) -> Vec<Event> {
        self.ok(
            owner,
            Command::Deploy {
                deployment_id: dep.into(),
                env_id: env.into(),
                wait_for_quota: false,
                policy: None,
            },
        )
    }

    pub fn node_of(&self, dep: &str) -> Option<String> {
        self.state.deployment(dep).and_then(|d| d.node.clone())
    }
}

pub fn admin() -> Actor {
    Actor::admin("root")
}

pub fn alice() -> Actor {
    Actor::user("alice")
}

pub fn bob() -> Actor {
    Actor::user("bob")
}

pub fn agent(node: &str) -> Actor {
    Actor::agent(node)
}

pub fn auditor() -> Actor {
    Actor {
        name: "eve".into(),
        role: Role::Auditor,
        node_id: None,
    }
}

pub fn catalog() -> LibraryCatalog {
    let libraries = BTreeMap::from([
        ("numpy".to_string(), vec!["pip install numpy".to_string()]),
        ("pandas".to_string(), vec!["pip install pandas".to_string()]),
    ]);
    LibraryCatalog {
        os: "ubuntu".into(),
        base_image: Some("ubuntu:22.04".into()),
        init_steps: vec!["apt-get -y update".into()],
        specifications: BTreeMap::from([(
            "python".to_string(),
            LanguageCatalog {
                installation_steps: vec!["apt-get install -y python3".into()],
                libraries,
            },
        )]),
        meta: Default::default(),
    }
}

/// A python environment asking `cpu_millis`, `gib` of memory and `gpus`.
pub fn spec(cpu_millis: u64, gib: u64, gpus: u32) -> EnvironmentSpec {
    EnvironmentSpec {
        name: "env".into(),
        version_label: "1".into(),
        os: "ubuntu".into(),
        languages: vec![LanguageSpec {
            name: "python".into(),
            libraries: vec!["numpy".into()],
        }],
        resources: Resources {
            cpu_millis,
            memory_bytes: gib * GIB,
            gpus,
            storage_bytes: GIB,
        },
        datasets: vec![],
        ports: vec![],
        storage: vec![],
        node_labels: BTreeMap::new(),
        is_active: true,
        meta: Default::default(),
    }
}

pub fn with_port(mut s: EnvironmentSpec, external: u16) -> EnvironmentSpec {
    s.ports.push(PortPublish {
        external,
        internal: 8888,
        protocol: Protocol::Tcp,
    });
    s
}

/// A node with `cpu_millis`, `gib` of memory, 100 GiB of disk and `gpus` devices
/// (uuids `ID-gpuN`, listed in reverse order to show sorting by index).
pub fn fingerprint(id: &str, cpu_millis: u64, gib: u64, gpus: u32) -> NodeFingerprint {
    NodeFingerprint {
        hostname: id.into(),
        os: "linux".into(),
        capacity: Resources {
            cpu_millis,
            memory_bytes: gib * GIB,
            gpus,
            storage_bytes: 100 * GIB,
        },
        reserved: Resources::default(),
        gpus: (0..gpus)
            .rev()
            .map(|i| GpuDevice {
                index: i,
                uuid: format!("{id}-gpu{i}"),
                model: "T4".into(),
                memory_bytes: 16 * GIB,
            })
            .collect(),
        labels: BTreeMap::new(),
        datasets: vec![],
        agent_version: "test".into(),
    }
}

pub fn heartbeat(node: &str) -> Command {
    Command::Heartbeat {
        node_id: node.into(),
        usage: Usage {
            cpu_millis: 100,
            memory_bytes: GIB,
        },
        containers: vec![],
        engine_ok: true,
    }
}

/// Event kinds, to compare sequences compactly.
pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// The node each `DeploymentScheduled` in `events` chose, in order.
pub fn scheduled(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DeploymentScheduled {
                deployment_id,
                node_id,
                ..
            } => Some((deployment_id.clone(), node_id.clone())),
            _ => None,
        })
        .collect()
}
