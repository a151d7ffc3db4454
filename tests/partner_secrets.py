"""The demo partners' secrets as the tests set them: one definition for every test that runs the
simulator (it reads the same environment variables, so partner and city agree)."""

SECRETS = {
    "SCOOTCO_MDS_TOKEN": "scoot-secret",
    "ZOOMRIDE_MDS_CLIENT_SECRET": "zoom-secret",  # OAuth client secret (zoomride issues tokens)
    "MOBILITY_PSEUDONYM_KEY": "k",
}
