//! How the tracker answers each refusal of its domain: every domain error ([`RegistryError`], [`AclError`],
//! [`MailboxError`], [`QuotaError`], [`BindError`], and [`Refused`], which is one of them) and every way a save can fail ([`SaveError`]) is mapped to its
//! [`ApiError`] here, once. The codes and statuses are those of `docs/PROTOCOL.md` ([`ErrorCode`]).

use super::acl::AclError;
use super::identities::BindError;
use super::mailbox::MailboxError;
use super::quota::QuotaError;
use super::registry::RegistryError;
use super::state::Refused;
use crate::http::ApiError;
use crate::proto::ErrorCode;

/// Why a change was not saved (the state had accepted it; the request is refused all the same).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SaveError {
    #[error("the tracker is saving too much at once; try again in a moment")]
    Busy,
    #[error("the change could not be saved: {0}")]
    Failed(String),
    #[error("the tracker is stopping")]
    Stopping,
}

impl From<SaveError> for ApiError {
    fn from(e: SaveError) -> Self {
        let code = match e {
            SaveError::Busy => ErrorCode::TrackerBusy,
            SaveError::Failed(_) => ErrorCode::StoreFailed,
            SaveError::Stopping => ErrorCode::Stopping,
        };
        ApiError::of(code, e.to_string())
    }
}

impl From<Refused> for ApiError {
    fn from(e: Refused) -> Self {
        match e {
            Refused::Registry(e) => e.into(),
            Refused::Identity(e) => e.into(),
            Refused::Mailbox(e) => e.into(),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        let code = match e {
            QuotaError::Channels { .. } => ErrorCode::ChannelQuota,
            QuotaError::Names { .. } => ErrorCode::NameQuota,
            QuotaError::Mail { .. } => ErrorCode::MailQuota,
            QuotaError::RecipientMail { .. } => ErrorCode::RecipientQuota,
        };
        ApiError::of(code, e.to_string())
    }
}

impl From<BindError> for ApiError {
    fn from(e: BindError) -> Self {
        let msg = e.to_string();
        match e {
            BindError::Quota(q) => q.into(),
            BindError::Confusable { .. } => ApiError::of(ErrorCode::NameConfusable, msg),
            BindError::NameTaken(_) => ApiError::of(ErrorCode::NameTaken, msg),
            BindError::Full => ApiError::of(ErrorCode::TrackerFull, msg),
        }
    }
}

impl From<MailboxError> for ApiError {
    fn from(e: MailboxError) -> Self {
        let msg = e.to_string();
        match e {
            MailboxError::Quota(q) => q.into(),
            MailboxError::UnknownRecipient(_) => ApiError::of(ErrorCode::UnknownRecipient, msg),
            MailboxError::Full { .. } => ApiError::of(ErrorCode::MailboxFull, msg),
            MailboxError::TrackerFull => ApiError::of(ErrorCode::TrackerFull, msg),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::Quota(q) => q.into(),
            RegistryError::Acl(e) => e.into(),
            RegistryError::Confusable { .. } => ApiError::of(ErrorCode::NameConfusable, msg),
            RegistryError::NameTaken { .. } => ApiError::of(ErrorCode::NameTaken, msg),
            RegistryError::UnknownPeer(_) => ApiError::of(ErrorCode::UnknownPeer, msg),
            RegistryError::UnknownChannel(_) => ApiError::of(ErrorCode::UnknownChannel, msg),
            RegistryError::NotMember { .. } => ApiError::of(ErrorCode::NotMember, msg),
            RegistryError::Full(_) => ApiError::of(ErrorCode::TrackerFull, msg),
            RegistryError::InvalidPresence(_) => ApiError::of(ErrorCode::InvalidField, msg),
        }
    }
}

impl From<AclError> for ApiError {
    fn from(e: AclError) -> Self {
        let code = match e {
            AclError::NotOwner { .. } => ErrorCode::NotOwner,
            AclError::Banned { .. } => ErrorCode::Banned,
            AclError::InviteOnly(_) => ErrorCode::InviteOnly,
            AclError::KeyRequired(_) | AclError::BadKey(_) => ErrorCode::BadKey,
            AclError::ReadOnly { .. } => ErrorCode::ReadOnly,
            AclError::MembersOnly(_) => ErrorCode::MembersOnly,
            AclError::InvalidKey(_) | AclError::IsOwner(_) => ErrorCode::InvalidField,
            AclError::TooMany(_) => ErrorCode::TrackerFull,
        };
        ApiError::of(code, e.to_string())
    }
}
