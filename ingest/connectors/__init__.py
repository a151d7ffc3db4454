"""One module per protocol, each with the same anatomy: settings, a client with auth, paging
and retries, and one method per endpoint returning `Fetched` (exact bytes plus what was asked)."""
