"""The write proxy: `com.atproto.repo.*` writes of `fm.plyr.*` records, validated here, forwarded to the repo's own
PDS, and folded into the index at once (read-your-writes). See service.py for the order of a write."""

from appview.proxy.fold import ProxyFold
from appview.proxy.service import WriteProxy

__all__ = ["ProxyFold", "WriteProxy"]
