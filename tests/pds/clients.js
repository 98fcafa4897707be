// Calls the AppView the way an application built on the official client does: `@atproto/api`'s AtpAgent, logged
// in at a PDS, with `withProxy('fm_plyr_appview', <AppView DID>)`, so that each call goes to the PDS, which
// resolves the AppView's did:web document and forwards the call with a service-auth token it mints. Without an
// account, the agent talks to the AppView directly, anonymously.
//
// Usage: node clients.js < plan.json   (NODE_PATH must point at the installed node_modules)
// plan: {"pds": url, "appview": url, "did": AppView DID, "lexicons": [paths of lexicon JSON files],
//        "account": {"identifier", "password"} or null (anonymous, straight to "appview"),
//        "calls": [{"method": nsid, "params": {...}, "body_base64": "...", "encoding": "audio/mpeg"}]}
// Prints one JSON line: for each call, {"ok": true, "data": output} or {"ok": false, "status", "error", "message"}.
// The agent checks every output against the method's lexicon, so a response that breaks it is an error too.
'use strict'

const fs = require('node:fs')
const { AtpAgent } = require('@atproto/api')

async function main() {
  const plan = JSON.parse(fs.readFileSync(0, 'utf8'))
  let agent
  if (plan.account) {
    const login = new AtpAgent({ service: plan.pds })
    await login.login(plan.account)
    agent = login.withProxy('fm_plyr_appview', plan.did)
  } else {
    agent = new AtpAgent({ service: plan.appview })
  }
  // The agent knows the com.atproto.* lexicons; ours are added so that it can build and check fm.plyr.* calls.
  for (const file of plan.lexicons) {
    agent.lex.add(JSON.parse(fs.readFileSync(file, 'utf8')))
  }
  const results = []
  for (const call of plan.calls) {
    const body = call.body_base64 === undefined ? undefined : new Uint8Array(Buffer.from(call.body_base64, 'base64'))
    const opts = call.encoding ? { encoding: call.encoding } : undefined
    try {
      const res = await agent.call(call.method, call.params || {}, body, opts)
      results.push({ ok: true, data: res.data })
    } catch (err) {
      results.push({
        ok: false,
        status: err.status ?? null,
        error: err.error ?? err.name ?? null,
        message: String(err.message ?? err),
      })
    }
  }
  process.stdout.write(JSON.stringify(results) + '\n')
}

main().catch((err) => {
  process.stderr.write(String((err && err.stack) || err) + '\n')
  process.exit(1)
})
