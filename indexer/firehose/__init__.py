"""Raw firehose (`com.atproto.sync.subscribeRepos`): frame decoding (`frames`), the commit path with its proofs
(`commit`) and the websocket source (`source`). Repo CARs, MSTs and commit signatures are ATProto primitives
shared with backfill: indexer/atproto/repo/."""
