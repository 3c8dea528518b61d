mod webhook_auth;
mod webhook_formats;
mod webhook_props;
mod webhook_support;
