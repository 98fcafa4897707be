"""HTTP routes that are not XRPC methods: audio playback and files, health and metrics, the service DID
document. XRPC methods live in appview/xrpc/, one module each; the HTML pages in appview/pages/."""
