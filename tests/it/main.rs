mod vod_signing;
