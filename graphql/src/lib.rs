//! DCloud's GraphQL API: the async-graphql schema with its queries (live views,
//! history, `at(seq:)` time travel), mutations (every command of the domain, the
//! scheduler and the agent protocol), subscriptions (filtered log tails), the read
//! rules per role, and the one mapping from errors to `extensions.code`.
//!
//! This crate does NOT serve HTTP or websockets, parse `Authorization` headers, or
//! own the writer: the server (`src/`) implements [`Backend`], authenticates the
//! bearer token with [`authenticate`], and puts the resulting
//! [`dcloud_projections::Actor`] and a [`RequestId`] into each request (or websocket
//! session). Business rules and write authorisation stay in `decide`.

pub mod auth;
pub mod backend;
pub mod catalogue;
pub mod error;
pub mod limits;
pub mod lists;
pub mod mutation;
pub mod query;
pub mod quota;
pub mod router;
pub mod schema;
pub mod session;
pub mod subscription;
pub mod types;
mod views;

pub use auth::{
    authenticate, authenticate_at, new_token, token_hash, wall_ms, IdempotencyKey, RequestId,
    TOKEN_PREFIX,
};
pub use backend::{Backend, StateGuard};
pub use error::{to_graphql_error, ApiError};
pub use router::{Router, RouterStats};
pub use schema::{
    schema, schema_with_router, sdl, DcloudSchema, Mutation, Query, SchemaOptions, SubscriptionRoot,
};
pub use session::{AgentRequest, LogLine, LogLines, LogStream, SessionKind, SessionRelay};
pub use subscription::Subscription;
pub use views::{Counts, DeploymentFilter};
