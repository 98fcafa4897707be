// A local PLC directory (in-memory database) and PDS on loopback ports, for tests/test_pds_e2e.py.
// Usage: node run.js DATA_DIR   (NODE_PATH must point at the installed node_modules)
// Prints one JSON line {"pds": url, "plc": url} on stdout once both listen; stops on SIGTERM/SIGINT.
'use strict'

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { PlcServer, Database: PlcDatabase } = require('@did-plc/server')
const { PDS, envToCfg, envToSecrets, readEnv } = require('@atproto/pds')

async function main() {
  const dataDir = process.argv[2]
  if (!dataDir) throw new Error('usage: node run.js DATA_DIR')
  fs.mkdirSync(path.join(dataDir, 'blobs'), { recursive: true })

  const plc = PlcServer.create({ db: PlcDatabase.mock(), port: 0 })
  const plcServer = await plc.start()
  const plcUrl = `http://127.0.0.1:${plcServer.address().port}`

  const port = Number(process.env.PDS_PORT || 0) || (await freePort())
  Object.assign(process.env, {
    PDS_HOSTNAME: 'localhost',
    PDS_PORT: String(port),
    PDS_DEV_MODE: 'true',
    PDS_INVITE_REQUIRED: 'false',
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_DATA_DIRECTORY: dataDir,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(dataDir, 'blobs'),
    PDS_DID_PLC_URL: plcUrl,
    PDS_JWT_SECRET: crypto.randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: 'admin-pass',
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: crypto.randomBytes(32).toString('hex'),
    // Nothing outside loopback: no crawlers to notify, no app view to proxy to.
    PDS_CRAWLERS: '',
    LOG_ENABLED: 'false',
  })
  const env = readEnv()
  const pds = await PDS.create(envToCfg(env), envToSecrets(env))
  await pds.start()
  process.stdout.write(JSON.stringify({ pds: `http://127.0.0.1:${port}`, plc: plcUrl }) + '\n')

  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    try {
      await pds.destroy()
      await plc.destroy()
    } finally {
      process.exit(0)
    }
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // The parent's end of stdin closing means the test process is gone: do not outlive it.
  process.stdin.on('end', stop)
  process.stdin.resume()
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = require('node:net').createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + '\n')
  process.exit(1)
})
