//! Who sends a command: a token's name, role and (for agents) node.

use dcloud_events::model::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// The node an `agent` token belongs to.
    pub node_id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            name: "system".into(),
            role: Role::Admin,
            node_id: None,
        }
    }

    pub fn admin(name: &str) -> Self {
        Actor {
            name: name.into(),
            role: Role::Admin,
            node_id: None,
        }
    }

    pub fn user(name: &str) -> Self {
        Actor {
            name: name.into(),
            role: Role::User,
            node_id: None,
        }
    }

    pub fn agent(node_id: &str) -> Self {
        Actor {
            name: node_id.into(),
            role: Role::Agent,
            node_id: Some(node_id.into()),
        }
    }

    pub fn auditor(name: &str) -> Self {
        Actor {
            name: name.into(),
            role: Role::Auditor,
            node_id: None,
        }
    }

    /// The actor string stored in envelopes: `role:name` (`system` for the server itself).
    pub fn label(&self) -> String {
        if self.name == "system" {
            return "system".into();
        }
        format!("{}:{}", self.role.as_str(), self.name)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
