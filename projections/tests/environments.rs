//! Given/when/then: environments and their versions, templates, catalogs, datasets,
//! services, tokens, and who may do each.

mod support;

use dcloud_events::model::{
    DatasetCategory, DatasetDb, DatasetVersion, Endpoint, Resources, Role, ServiceRegistration,
};
use dcloud_events::Event;
use dcloud_projections::{Command, DomainError, SpecOverrides};
use support::*;

fn create(env: &str) -> Command {
    Command::CreateEnvironment {
        env_id: env.into(),
        spec: spec(1000, 1, 0),
    }
}

#[test]
fn create_records_the_caller_as_owner() {
    let w = World::with_catalog();
    let events = w.when(&alice(), create("e1")).unwrap();
    assert_eq!(
        events,
        vec![Event::EnvironmentCreated {
            env_id: "e1".into(),
            owner: "alice".into(),
            spec: spec(1000, 1, 0)
        }]
    );
}

#[test]
fn create_refuses_an_existing_id_and_unknown_libraries() {
    let mut w = World::with_catalog();
    w.ok(&alice(), create("e1"));
    assert_eq!(
        w.when(&bob(), create("e1")),
        Err(DomainError::AlreadyExists {
            kind: "environment",
            id: "e1".into()
        })
    );
    let mut bad = spec(1000, 1, 0);
    bad.languages[0].libraries.push("tensorflw".into());
    match w.when(
        &alice(),
        Command::CreateEnvironment {
            env_id: "e2".into(),
            spec: bad,
        },
    ) {
        Err(DomainError::Validation(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].path, "languages[0].libraries[1]");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn update_bumps_the_version_and_stale_versions_conflict() {
    let mut w = World::with_catalog();
    w.ok(&alice(), create("e1"));
    let events = w.ok(
        &alice(),
        Command::UpdateEnvironment {
            env_id: "e1".into(),
            expected_version: 1,
            spec: spec(2000, 2, 0),
        },
    );
    assert_eq!(
        events,
        vec![Event::EnvironmentUpdated {
            env_id: "e1".into(),
            version: 2,
            spec: spec(2000, 2, 0)
        }]
    );
    let env = w.state.environment("e1").unwrap();
    assert_eq!(env.version(), 2);
    assert_eq!(env.versions.len(), 2);
    assert_eq!(env.spec_at(1).unwrap().resources.cpu_millis, 1000);
    let stale = Command::UpdateEnvironment {
        env_id: "e1".into(),
        expected_version: 1,
        spec: spec(3000, 2, 0),
    };
    assert_eq!(
        w.when(&alice(), stale),
        Err(DomainError::Conflict {
            expected: 1,
            actual: 2
        })
    );
}

#[test]
fn users_touch_only_their_own_environments() {
    let mut w = World::with_catalog();
    w.ok(&alice(), create("e1"));
    let update = Command::UpdateEnvironment {
        env_id: "e1".into(),
        expected_version: 1,
        spec: spec(1, 1, 0),
    };
    assert!(matches!(
        w.when(&bob(), update.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert!(w.when(&admin(), update).is_ok());
    let deploy = Command::Deploy {
        deployment_id: "d1".into(),
        env_id: "e1".into(),
        wait_for_quota: false,
        policy: None,
    };
    assert!(matches!(
        w.when(&bob(), deploy),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn deactivate_once_refuses_new_deployments() {
    let mut w = World::with_catalog();
    w.ok(&alice(), create("e1"));
    let deactivate = Command::DeactivateEnvironment {
        env_id: "e1".into(),
    };
    assert_eq!(
        w.ok(&alice(), deactivate.clone()),
        vec![Event::EnvironmentDeactivated {
            env_id: "e1".into()
        }]
    );
    assert_eq!(w.ok(&alice(), deactivate), vec![]);
    let deploy = Command::Deploy {
        deployment_id: "d1".into(),
        env_id: "e1".into(),
        wait_for_quota: false,
        policy: None,
    };
    assert!(
        matches!(w.when(&alice(), deploy), Err(DomainError::Invalid(m)) if m.contains("inactive"))
    );
}

#[test]
fn delete_is_refused_while_deployments_are_live() {
    let mut w = World::with_catalog();
    w.add_env("e1", &alice(), spec(1000, 1, 0));
    w.deploy(&alice(), "d1", "e1"); // no nodes: pending, still live
    let delete = Command::DeleteEnvironment {
        env_id: "e1".into(),
    };
    assert!(
        matches!(w.when(&alice(), delete.clone()), Err(DomainError::Invalid(m)) if m.contains("1 live"))
    );
    w.ok(
        &alice(),
        Command::Stop {
            deployment_id: "d1".into(),
        },
    );
    assert_eq!(
        w.ok(&alice(), delete.clone()),
        vec![Event::EnvironmentDeleted {
            env_id: "e1".into()
        }]
    );
    assert_eq!(
        w.when(&alice(), delete),
        Err(DomainError::NotFound {
            kind: "environment",
            id: "e1".into()
        })
    );
    // History stays: the stopped deployment still names its version.
    assert_eq!(w.state.environments["e1"].versions.len(), 1);
}

#[test]
fn templates_are_admin_curated_and_overrides_apply() {
    let mut w = World::with_catalog();
    let save = Command::SaveTemplate {
        name: "small".into(),
        spec: spec(500, 1, 0),
        idle_timeout_ms: None,
    };
    assert!(matches!(
        w.when(&alice(), save.clone()),
        Err(DomainError::Forbidden(_))
    ));
    w.ok(&admin(), save);
    let overrides = SpecOverrides {
        name: Some("mine".into()),
        resources: Some(Resources {
            cpu_millis: 2000,
            memory_bytes: 2 * GIB,
            gpus: 0,
            storage_bytes: GIB,
        }),
        ports: Some(with_port(spec(0, 0, 0), 18888).ports),
        ..SpecOverrides::default()
    };
    let events = w.ok(
        &alice(),
        Command::CreateFromTemplate {
            env_id: "e1".into(),
            template: "small".into(),
            overrides,
        },
    );
    let Event::EnvironmentCreated {
        owner, spec: made, ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(owner, "alice");
    assert_eq!(made.name, "mine");
    assert_eq!(made.resources.cpu_millis, 2000);
    assert_eq!(made.ports[0].external, 18888);
    assert_eq!(
        made.languages,
        spec(0, 0, 0).languages,
        "not overridden: kept from the template"
    );
    let missing = Command::CreateFromTemplate {
        env_id: "e2".into(),
        template: "nope".into(),
        overrides: SpecOverrides::default(),
    };
    assert_eq!(
        w.when(&alice(), missing),
        Err(DomainError::NotFound {
            kind: "template",
            id: "nope".into()
        })
    );
    w.ok(
        &admin(),
        Command::DeleteTemplate {
            name: "small".into(),
        },
    );
    assert!(w.state.templates.is_empty());
}

#[test]
fn only_admins_change_catalogs() {
    let w = World::new();
    let upsert = Command::UpsertCatalog { catalog: catalog() };
    assert!(matches!(
        w.when(&alice(), upsert.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        w.when(&agent("n1"), upsert.clone()),
        Err(DomainError::Forbidden(_))
    ));
    assert_eq!(
        w.when(&admin(), upsert).unwrap(),
        vec![Event::CatalogUpserted { catalog: catalog() }]
    );
}

#[test]
fn auditors_are_refused_everything() {
    let w = World::with_catalog();
    for cmd in [
        create("e1"),
        Command::UpsertCatalog { catalog: catalog() },
        Command::RegisterNode {
            node_id: "n1".into(),
            fingerprint: fingerprint("n1", 1000, 1, 0),
        },
        Command::ExpireServices,
        Command::RetryPending,
        Command::RevokeToken {
            token_id: "t".into(),
        },
    ] {
        assert!(matches!(
            w.when(&auditor(), cmd),
            Err(DomainError::Forbidden(_))
        ));
    }
}

fn imagenet(version: &str) -> DatasetCategory {
    DatasetCategory {
        category: "vision".into(),
        dbs: vec![DatasetDb {
            name: "imagenet".into(),
            datasets: vec![DatasetVersion {
                name: "train".into(),
                version: version.into(),
            }],
        }],
    }
}

#[test]
fn datasets_are_registered_by_admins_or_the_dfs_server_and_checked_by_environments() {
    let mut w = World::with_catalog();
    let register = Command::RegisterDatasets {
        category: imagenet("1"),
    };
    assert!(matches!(
        w.when(&alice(), register.clone()),
        Err(DomainError::Forbidden(_))
    ));
    let mut with_data = spec(1000, 1, 0);
    with_data.datasets = vec![imagenet("1")];
    let create = Command::CreateEnvironment {
        env_id: "e1".into(),
        spec: with_data,
    };
    assert!(matches!(
        w.when(&alice(), create.clone()),
        Err(DomainError::Validation(_))
    ));
    w.ok(&dcloud_projections::Actor::user("dfs-server"), register);
    w.ok(&alice(), create);
    let remove = |v: &str| Command::RemoveDataset {
        category: "vision".into(),
        db: "imagenet".into(),
        dataset: "train".into(),
        version: v.into(),
    };
    assert!(matches!(
        w.when(&admin(), remove("9")),
        Err(DomainError::NotFound { .. })
    ));
    w.ok(&admin(), remove("1"));
    assert!(!w
        .state
        .datasets
        .contains("vision", "imagenet", "train", "1"));
}

fn service(name: &str, ttl_ms: Option<u64>) -> ServiceRegistration {
    ServiceRegistration {
        name: name.into(),
        endpoints: vec![Endpoint {
            ip: "127.0.0.1".into(),
            port: 8003,
        }],
        ttl_ms,
        single: true,
        meta: Default::default(),
    }
}

#[test]
fn services_register_refresh_and_expire_after_their_ttl() {
    let mut w = World::new();
    let dfs = dcloud_projections::Actor::user("dfs-server");
    assert!(matches!(
        w.when(
            &alice(),
            Command::RegisterService {
                service: service("dfs-server", Some(1000))
            }
        ),
        Err(DomainError::Forbidden(_))
    ));
    w.ok(
        &dfs,
        Command::RegisterService {
            service: service("dfs-server", Some(1000)),
        },
    );
    w.ok(
        &admin(),
        Command::RegisterService {
            service: service("broker", None),
        },
    );
    w.now += 800;
    w.ok(
        &dfs,
        Command::RefreshService {
            name: "dfs-server".into(),
        },
    );
    assert_eq!(w.state.services["dfs-server"].refreshed_ms, w.now);
    w.now += 1000; // exactly the TTL since the refresh: still alive
    assert_eq!(w.ok(&admin(), Command::ExpireServices), vec![]);
    w.now += 1;
    assert_eq!(
        w.ok(&admin(), Command::ExpireServices),
        vec![Event::ServiceExpired {
            name: "dfs-server".into()
        }]
    );
    assert_eq!(
        w.state.services.keys().collect::<Vec<_>>(),
        vec!["broker"],
        "no TTL: never expires"
    );
    assert!(matches!(
        w.when(
            &dfs,
            Command::RefreshService {
                name: "dfs-server".into()
            }
        ),
        Err(DomainError::NotFound { .. })
    ));
    w.ok(
        &admin(),
        Command::DeregisterService {
            name: "broker".into(),
        },
    );
    assert!(w.state.services.is_empty());
}

#[test]
fn tokens_are_admin_only_and_agent_tokens_name_a_node() {
    let mut w = World::new();
    let make = |id: &str, role, node: Option<&str>| Command::CreateToken {
        token_id: id.into(),
        name: "x".into(),
        role,
        secret_hash: [7; 32],
        node_id: node.map(str::to_string),
    };
    assert!(matches!(
        w.when(&alice(), make("t1", Role::User, None)),
        Err(DomainError::Forbidden(_))
    ));
    assert!(matches!(
        w.when(&admin(), make("t1", Role::Agent, None)),
        Err(DomainError::Validation(_))
    ));
    w.ok(&admin(), make("t1", Role::Agent, Some("n1")));
    assert_eq!(
        w.state
            .token_by_secret_hash(&[7; 32])
            .map(|t| t.id.as_str()),
        Some("t1")
    );
    w.ok(
        &admin(),
        Command::RevokeToken {
            token_id: "t1".into(),
        },
    );
    assert!(w.state.token_by_secret_hash(&[7; 32]).is_none());
    assert_eq!(
        w.ok(
            &admin(),
            Command::RevokeToken {
                token_id: "t1".into()
            }
        ),
        vec![]
    );
}

#[test]
fn a_template_idle_timeout_is_given_to_environments_made_from_it() {
    let mut w = World::with_catalog();
    let save = |ms: Option<u64>| Command::SaveTemplate {
        name: "small".into(),
        spec: spec(500, 1, 0),
        idle_timeout_ms: ms,
    };
    let events = w.ok(&admin(), save(Some(1_800_000)));
    assert_eq!(
        events[1],
        Event::TemplateIdleTimeoutSet {
            name: "small".into(),
            timeout_ms: 1_800_000
        }
    );
    assert_eq!(w.state.templates["small"].idle_timeout_ms, 1_800_000);
    let from = |env: &str| Command::CreateFromTemplate {
        env_id: env.into(),
        template: "small".into(),
        overrides: SpecOverrides::default(),
    };
    let events = w.ok(&alice(), from("e1"));
    assert_eq!(
        events[1],
        Event::EnvironmentIdleTimeoutSet {
            env_id: "e1".into(),
            version: 1,
            timeout_ms: 1_800_000
        }
    );
    // Out of bounds: refused, nothing changes.
    assert!(matches!(
        w.when(&admin(), save(Some(5_000))),
        Err(DomainError::Validation(_))
    ));
    assert_eq!(w.state.templates["small"].idle_timeout_ms, 1_800_000);
    // Saved again without the field: cleared.
    assert_eq!(w.ok(&admin(), save(None)).len(), 1);
    assert_eq!(w.state.templates["small"].idle_timeout_ms, 0);
    assert_eq!(w.ok(&alice(), from("e2")).len(), 1);
}
