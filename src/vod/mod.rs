//! The ApsaraVideo VOD client: Signature Version 1.0, typed requests, responses and errors.
//!
//! VOD speaks Alibaba Cloud's RPC style: every parameter is a query parameter on `/`, signed with
//! HMAC-SHA1 over a canonical form (`vod-api.md` §4). [`signing`] is the pure signer that the
//! published vectors test; [`Client`] adds the common parameters, sends one signed attempt per
//! call and turns every answer into a typed response or a classified [`VodError`], so the flusher
//! can decide between backing off, retrying and giving up.

mod client;
mod error;
mod types;

pub use crate::acs::{remote, signing};

pub use crate::credentials::{CredentialSource, Credentials};
pub use client::{
    API_VERSION, Client, ClientConfig, REFRESH_TASKS_PAGE, endpoint_for_region,
    install_tls_provider, rpc_timestamp,
};
pub use error::{ErrorClass, VodError, class_of_code};
pub use types::{
    CdnTask, GetMediaRefreshJobsResponse, MAX_MEDIA_IDS, MAX_OBJECT_PATHS, MediaRefreshJob,
    ObjectRequest, ObjectResponse, RefreshQuota, RefreshRequest, RefreshResponse, RefreshTasksPage,
    Video, VideoInfo,
};
