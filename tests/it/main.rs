mod store;
mod vod_signing;
