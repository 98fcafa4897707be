// Validates records with the reference implementation, @atproto/lexicon, for tests/test_lexicon_reference.py.
//
// usage: node validate.js NODE_MODULES_DIR LEXICON_DIR [LEXICON_DIR ...]
// stdin: one JSON object per line, {"collection": nsid, "rkey": string, "record": <JSON data model>}
// stdout: one JSON object per input line, {"ok": true} or {"ok": false, "error": message}
//
// The record goes through jsonToLex first, as the reference does with JSON input, so `$link`, `$bytes` and
// blobs become CID, bytes and BlobRef objects; a record that conversion refuses is refused. The library's
// record validation does not look at the record key, so the key is checked here against the lexicon's `key`
// with the reference syntax library (@atproto/syntax).
'use strict'
const fs = require('fs')
const path = require('path')
const readline = require('readline')

const [modulesArg, ...dirs] = process.argv.slice(2)
const modules = path.resolve(modulesArg)
const { Lexicons, jsonToLex } = require(path.join(modules, '@atproto/lexicon'))
const syntax = require(path.join(modules, '@atproto/syntax'))

function* walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) yield* walk(full)
    else if (entry.name.endsWith('.json')) yield full
  }
}

const lexicons = new Lexicons()
const keys = new Map()
for (const dir of dirs) {
  for (const file of walk(dir)) {
    const doc = JSON.parse(fs.readFileSync(file, 'utf8'))
    lexicons.add(doc)
    const main = doc.defs && doc.defs.main
    if (main && main.type === 'record') keys.set(doc.id, main.key || 'any')
  }
}

function keyError(collection, rkey) {
  const key = keys.get(collection)
  if (key === undefined) return `unknown record collection ${collection}`
  if (typeof rkey !== 'string' || !syntax.isValidRecordKey(rkey)) return 'invalid record key'
  if (key === 'tid' && !syntax.isValidTid(rkey)) return 'record key must be a TID'
  if (key === 'nsid' && !syntax.isValidNsid(rkey)) return 'record key must be an NSID'
  if (key.startsWith('literal:') && rkey !== key.slice('literal:'.length)) return `record key must be ${key}`
  return null
}

function check(line) {
  const { collection, rkey, record } = JSON.parse(line)
  const bad = keyError(collection, rkey)
  if (bad) return { ok: false, error: bad }
  try {
    lexicons.assertValidRecord(collection, jsonToLex(record))
    return { ok: true }
  } catch (err) {
    return { ok: false, error: String(err && err.message ? err.message : err) }
  }
}

const out = []
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  if (line.trim()) out.push(JSON.stringify(check(line)))
})
rl.on('close', () => {
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''))
})
