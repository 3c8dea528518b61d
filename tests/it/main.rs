mod pipeline;
mod store;
mod support;
mod vod_signing;
mod webhook_auth;
mod webhook_formats;
mod webhook_props;
mod webhook_support;
