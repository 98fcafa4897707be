"""HTTP routes that are not XRPC methods: audio playback and files, health and metrics, the API documentation
(`/schema`, api_docs.py), and HEAD answered wherever GET is (head.py). XRPC methods live in appview/xrpc/, one
module each; the HTML pages in appview/pages/; the service DID document in appview/well_known.py."""
