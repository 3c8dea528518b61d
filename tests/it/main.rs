mod webhook_auth;
mod webhook_support;
