mod sim;
mod vod_client;
mod vod_signing;
