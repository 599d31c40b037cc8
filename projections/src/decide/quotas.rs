//! Quotas: admins set a user's limits (CPU, memory, GPUs, live deployments); a deploy
//! past them is refused or, when it asked to, waits. The check itself is
//! [`crate::state::quota_excess`]; where it applies is `deployments.rs` and
//! [`Scratch::place_pending`].

use dcloud_events::model::Quota;
use dcloud_events::Event;

use super::{admin_only, Scratch};
use crate::error::{DomainError, FieldError};

/// Replaces `user`'s quota. Raising it may let deployments waiting for quota be
/// placed at once; lowering it stops nothing that runs (it only refuses new ones).
pub(super) fn set(s: &mut Scratch<'_>, user: &str, quota: &Quota) -> Result<(), DomainError> {
    admin_only(s.ctx, "setting a quota")?;
    if user.trim().is_empty() || user.chars().any(char::is_whitespace) {
        return Err(DomainError::Validation(vec![FieldError::new(
            "user",
            format!("{user:?} is not a user name; expected a token name such as alice"),
        )]));
    }
    let current = s.state.quotas.get(user).cloned().unwrap_or_default();
    if &current == quota {
        return Ok(());
    }
    s.emit(Event::QuotaSet {
        user: user.to_string(),
        quota: quota.clone(),
    });
    s.quota_relief(user);
    s.place_pending(false);
    Ok(())
}
