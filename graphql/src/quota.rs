//! Quotas over GraphQL: `setQuota` and `quotas` (admins; auditors may read), and the
//! `Quota`/`QuotaUsage` types `me` also shows. The rules are `decide`'s.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use dcloud_events::model;
use dcloud_projections::{state, Command, FieldError, State};

use crate::auth::{actor, require_sees_all};
use crate::error::{ApiError, Gql};
use crate::mutation::submit;
use crate::query::live;

/// A user's limits. Each field `null`: no limit on that axis.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpus: Option<u32>,
    /// Live deployments at once.
    pub deployments: Option<u32>,
}

impl From<&model::Quota> for Quota {
    fn from(q: &model::Quota) -> Self {
        Quota {
            cpu_millis: q.cpu_millis,
            memory_bytes: q.memory_bytes,
            gpus: q.gpus,
            deployments: q.deployments,
        }
    }
}

/// What a user's live deployments need (pending ones included; those waiting for
/// quota are not counted).
#[derive(SimpleObject, Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
    pub deployments: u64,
}

impl From<state::QuotaUsage> for QuotaUsage {
    fn from(u: state::QuotaUsage) -> Self {
        QuotaUsage {
            cpu_millis: u.cpu_millis,
            memory_bytes: u.memory_bytes,
            gpus: u.gpus,
            deployments: u.deployments,
        }
    }
}

/// A user's limits to set; a `null` (or absent) field is no limit on that axis, and
/// all of them `null` removes the quota.
#[derive(InputObject, Clone, Debug, Default)]
pub struct QuotaInput {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub gpus: Option<i64>,
    pub deployments: Option<i64>,
}

impl QuotaInput {
    /// The domain's quota, or every negative or too large field (`quota.<field>`).
    fn into_domain(self) -> Result<model::Quota, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |name: &str, v: Option<i64>, max: i64| -> Option<i64> {
            let v = v?;
            if v < 0 || v > max {
                errors.push(FieldError::new(
                    format!("quota.{name}"),
                    format!("{v} is out of range; expected 0 to {max}, or null for no limit"),
                ));
                return None;
            }
            Some(v)
        };
        let q = model::Quota {
            cpu_millis: check("cpuMillis", self.cpu_millis, i64::MAX).map(|v| v as u64),
            memory_bytes: check("memoryBytes", self.memory_bytes, i64::MAX).map(|v| v as u64),
            gpus: check("gpus", self.gpus, i64::from(u32::MAX)).map(|v| v as u32),
            deployments: check("deployments", self.deployments, i64::from(u32::MAX))
                .map(|v| v as u32),
        };
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(errors)
        }
    }
}

/// One user's quota and what they use of it.
#[derive(SimpleObject, Clone, Debug)]
pub struct UserQuota {
    pub user: String,
    /// `null`: unlimited.
    pub quota: Option<Quota>,
    pub usage: QuotaUsage,
}

pub(crate) fn user_quota(state: &State, user: &str) -> UserQuota {
    UserQuota {
        user: user.to_string(),
        quota: state.quotas.get(user).map(Into::into),
        usage: state.quota_usage(user).into(),
    }
}

#[derive(Default)]
pub struct QuotaQuery;

#[Object]
impl QuotaQuery {
    /// Every user with a quota, with their usage (admins and auditors).
    async fn quotas(&self, ctx: &Context<'_>) -> Result<Vec<UserQuota>> {
        live(ctx, |r| {
            require_sees_all(r.actor, "quotas")?;
            Ok(r.state
                .quotas
                .keys()
                .map(|u| user_quota(r.state, u))
                .collect())
        })
        .gql(ctx)
    }

    /// One user's quota and usage (admins and auditors; a user may ask for their own).
    async fn quota(&self, ctx: &Context<'_>, user: String) -> Result<UserQuota> {
        live(ctx, |r| {
            if r.actor.name != user {
                require_sees_all(r.actor, "another user's quota")?;
            }
            Ok(user_quota(r.state, &user))
        })
        .gql(ctx)
    }
}

#[derive(Default)]
pub struct QuotaMutation;

#[Object]
impl QuotaMutation {
    /// Replaces `user`'s quota (admins). Lowering it stops nothing that runs; raising
    /// it places deployments waiting for quota that now fit.
    async fn set_quota(
        &self,
        ctx: &Context<'_>,
        user: String,
        quota: QuotaInput,
    ) -> Result<UserQuota> {
        let run = async {
            actor(ctx)?;
            let quota = quota
                .into_domain()
                .map_err(|e| ApiError::Domain(dcloud_projections::DomainError::Validation(e)))?;
            submit(
                ctx,
                Command::SetQuota {
                    user: user.clone(),
                    quota,
                },
            )
            .await?;
            live(ctx, |r| Ok(user_quota(r.state, &user)))
        };
        run.await.gql(ctx)
    }
}
