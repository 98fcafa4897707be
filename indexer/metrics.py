"""Prometheus metrics. One `Metrics` object per process, passed to the parts that report; no module globals,
so tests can build as many independent instances as they like."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "plyr_events_received", "Events and frames read from a source", ["source"], registry=r
        )
        self.events_accepted = Counter(
            "plyr_events_accepted",
            "Events appended to the event log (duplicates excluded)",
            ["kind"],
            registry=r,
        )
        self.events_duplicate = Counter("plyr_events_duplicate", "Events already present in the event log", registry=r)
        self.events_rejected = Counter(
            "plyr_events_rejected", "Frames, events and records refused, by reason", ["reason"], registry=r
        )
        self.batch_seconds = Histogram(
            "plyr_batch_seconds",
            "Time to write and fold one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_events = Histogram(
            "plyr_batch_events",
            "Events per committed batch",
            buckets=(1, 10, 100, 1000, 5000, 20000),
            registry=r,
        )
        self.cursor = Gauge("plyr_source_cursor", "Last committed cursor per source", ["source"], registry=r)
        self.lag_seconds = Gauge(
            "plyr_ingest_lag_seconds",
            "Now minus the event time of the last committed event",
            ["source"],
            registry=r,
        )
        self.reconnects = Counter("plyr_source_reconnects", "Source reconnections", ["source"], registry=r)
        # Per host: a v1 source (`jetstream`) fails over between several hosts under one source name.
        self.source_connected = Gauge(
            "plyr_source_connected",
            "1 while the source's connection to this host is open, else 0",
            ["source", "host"],
            registry=r,
        )
        self.connect_attempts = Counter(
            "plyr_source_connect_attempts",
            "Connection attempts per source and host, by outcome (connected, failed)",
            ["source", "host", "outcome"],
            registry=r,
        )
        self.labels = Counter(
            "plyr_labels",
            "Labels received from labelers, by labeler and outcome (accepted, or the reason it was refused)",
            ["labeler", "outcome"],
            registry=r,
        )
        self.proxy_writes = Counter(
            "plyr_proxy_writes",
            "Writes proxied to users' PDSes, by XRPC method and outcome (ok, invalid, refused, rate_limited, pds_error,"
            " timeout, upstream_failure)",
            ["method", "outcome"],
            registry=r,
        )
        self.proxy_upstream_seconds = Histogram(
            "plyr_proxy_upstream_seconds",
            "Time the user's PDS took to answer a proxied write",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.proxy_fold_failures = Counter(
            "plyr_proxy_fold_failures",
            "Proxied writes the PDS accepted but that could not be folded at once (the firehose brings them)",
            ["method"],
            registry=r,
        )
        self.audio_uploads = Counter(
            "plyr_audio_uploads",
            "fm.plyr.uploadAudio requests by outcome (stored, deduplicated, too_large, invalid_audio, unauthorized,"
            " rate_limited, interrupted, failed)",
            ["outcome"],
            registry=r,
        )
        self.audio_upload_bytes = Counter("plyr_audio_upload_bytes", "Audio bytes received by uploads", registry=r)
        self.audio_flagged = Counter(
            "plyr_audio_flagged",
            "Indexed tracks whose audioUrl is on our origin but names no stored object, by reason",
            ["reason"],
            registry=r,
        )
        self.supporter_checks = Counter(
            "plyr_supporter_checks",
            "Requests to the supporter check service for gated audio, by outcome (proven, not_supporter; failures,"
            " which prove nothing: timeout, unreachable, error_status, bad_answer)",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "plyr_rate_limited",
            "Requests refused with 429 RateLimitExceeded, by policy (reads, writes, uploads, upload_bytes)",
            ["policy"],
            registry=r,
        )
        self.rate_limit_failures = Counter(
            "plyr_rate_limit_failures",
            "Rate-limit counter statements that failed (the request was served unlimited)",
            registry=r,
        )
        self.page_cache_requests = Counter(
            "plyr_page_cache_requests",
            "Anonymous reads the page cache could answer, by result (hit: sent from memory, miss: handler ran)",
            ["result"],
            registry=r,
        )
        self.page_cache_invalidations = Counter(
            "plyr_page_cache_invalidations",
            "Times the page cache was emptied: a change to the index was notified, or notifications stopped or resumed",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
