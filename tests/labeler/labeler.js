// A labeler on loopback for the tests: a did:web identity, and com.atproto.label.subscribeLabels over a
// websocket, with labels signed by the reference implementation (@atproto/crypto Secp256k1Keypair over the
// DAG-CBOR encoding of @atproto/common, as Ozone signs them).
//
// Prints one JSON line {url, did} when it listens. Driven by the tests over HTTP:
//   POST /admin/emit   {labels: [{uri, val, cid?, neg?, exp?, cts?, src?, forge?, unsigned?}]} -> {seq}
//                      one #labels frame; `forge` signs with a key the DID document does not name
//   POST /admin/rotate rotates the #atproto_label key (the DID document changes, later labels use the new key)
//   POST /admin/info   {name, message}  an #info frame to every subscriber
//   POST /admin/raw    {hex}            arbitrary bytes to every subscriber
//   POST /admin/vector {label}          {bytes, sig, key}: the signing bytes and signature of `label`
//   GET  /admin/stats                   {subscriptions, cursors}
const http = require('node:http')
const { WebSocketServer } = require('ws')
const { Secp256k1Keypair } = require('@atproto/crypto')
const { cborEncode } = require('@atproto/common')

const frames = [] // {seq, bytes}
const subscribers = new Set()
const cursors = []
let seq = 0
let key
let forger
let did
let url

function hex(bytes) {
  return Buffer.from(bytes).toString('hex')
}

function frame(header, body) {
  return Buffer.concat([Buffer.from(cborEncode(header)), Buffer.from(cborEncode(body))])
}

async function sign(label, keypair) {
  const unsigned = { ...label }
  delete unsigned.sig
  const bytes = cborEncode(unsigned)
  return { bytes, sig: await keypair.sign(bytes) }
}

function didDocument() {
  const multibase = key.did().slice('did:key:'.length)
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: did,
    verificationMethod: [
      { id: `${did}#atproto_label`, type: 'Multikey', controller: did, publicKeyMultibase: multibase },
    ],
    service: [{ id: '#atproto_labeler', type: 'AtprotoLabeler', serviceEndpoint: url }],
  }
}

async function makeLabel(spec) {
  const label = { ver: 1, src: spec.src || did, uri: spec.uri, val: spec.val, cts: spec.cts || new Date().toISOString() }
  if (spec.cid) label.cid = spec.cid
  if (spec.neg) label.neg = true
  if (spec.exp) label.exp = spec.exp
  if (spec.unsigned) return label
  const { sig } = await sign(label, spec.forge ? forger : key)
  label.sig = sig
  return label
}

function broadcast(bytes) {
  for (const ws of subscribers) ws.send(bytes)
}

async function body(req) {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {}
}

function reply(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(value))
}

const server = http.createServer(async (req, res) => {
  try {
    const path = req.url.split('?')[0]
    if (req.method === 'GET' && path === '/.well-known/did.json') return reply(res, 200, didDocument())
    if (req.method === 'GET' && path === '/admin/stats') {
      return reply(res, 200, { subscriptions: subscribers.size, cursors })
    }
    if (req.method !== 'POST') return reply(res, 404, { error: 'NotFound' })
    const input = await body(req)
    if (path === '/admin/emit') {
      const labels = []
      for (const spec of input.labels) labels.push(await makeLabel(spec))
      seq += 1
      const bytes = frame({ op: 1, t: '#labels' }, { seq, labels })
      frames.push({ seq, bytes })
      broadcast(bytes)
      return reply(res, 200, { seq })
    }
    if (path === '/admin/rotate') {
      key = await Secp256k1Keypair.create({ exportable: true })
      return reply(res, 200, { key: key.did() })
    }
    if (path === '/admin/info') {
      broadcast(frame({ op: 1, t: '#info' }, { name: input.name, message: input.message }))
      return reply(res, 200, {})
    }
    if (path === '/admin/raw') {
      broadcast(Buffer.from(input.hex, 'hex'))
      return reply(res, 200, {})
    }
    if (path === '/admin/vector') {
      const { bytes, sig } = await sign(input.label, key)
      return reply(res, 200, { bytes: hex(bytes), sig: hex(sig), key: key.did() })
    }
    return reply(res, 404, { error: 'NotFound' })
  } catch (err) {
    reply(res, 500, { error: String(err && err.stack ? err.stack : err) })
  }
})

const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  const parsed = new URL(req.url, url)
  if (parsed.pathname !== '/xrpc/com.atproto.label.subscribeLabels') {
    socket.destroy()
    return
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const cursor = parsed.searchParams.has('cursor') ? Number(parsed.searchParams.get('cursor')) : null
    cursors.push(cursor)
    if (cursor !== null && cursor > seq) {
      ws.send(frame({ op: -1 }, { error: 'FutureCursor', message: `cursor ${cursor} is ahead of ${seq}` }))
      ws.close()
      return
    }
    if (cursor !== null) for (const f of frames) if (f.seq > cursor) ws.send(f.bytes)
    subscribers.add(ws)
    ws.on('close', () => subscribers.delete(ws))
  })
})

async function main() {
  key = await Secp256k1Keypair.create({ exportable: true })
  forger = await Secp256k1Keypair.create({ exportable: true })
  server.listen(0, '127.0.0.1', () => {
    const port = server.address().port
    url = `http://127.0.0.1:${port}`
    did = `did:web:127.0.0.1%3A${port}`
    process.stdout.write(JSON.stringify({ url, did }) + '\n')
  })
}

process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
main()
