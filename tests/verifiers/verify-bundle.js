// An independent check of the sigstore bundle imagekit writes, with sigstore-js (@sigstore/verify),
// as `cosign verify-attestation --key K --insecure-ignore-tlog` checks it: the bundle parses and
// validates, its DSSE signature verifies with the given public key (whatever key hint it carries),
// no transparency-log entry, timestamp or SCT required. Then the statement: in-toto, the predicate
// type asked for, and a subject whose sha256 is the image's digest.
//   node verify-bundle.js BUNDLE.json KEY.pub PREDICATE_TYPE sha256:<hex>
// Prints one JSON line, {"ok": true, "predicate": {...}} or {"ok": false, "error": "..."}; exit 0 / 1.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [bundlePath, keyPath, predicateType, digest] = process.argv.slice(2);
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const key = crypto.createPublicKey(fs.readFileSync(keyPath, 'utf8'));
  const root = { mediaType: '', certificateAuthorities: [], ctlogs: [], tlogs: [], timestampAuthorities: [] };
  const trust = toTrustMaterial(root, () => ({ publicKey: key, validFor: () => true }));
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== 'application/vnd.in-toto+json') throw new Error(`payloadType ${envelope.payloadType}`);
  const statement = JSON.parse(Buffer.from(envelope.payload).toString('utf8'));
  if (statement.predicateType !== predicateType) throw new Error(`predicateType ${statement.predicateType}`);
  const hex = digest.replace(/^sha256:/, '');
  if (!(statement.subject || []).some((s) => (s.digest || {}).sha256 === hex)) throw new Error(`no subject is ${digest}`);
  console.log(JSON.stringify({ ok: true, predicate: statement.predicate }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: `${e.code ? e.code + ': ' : ''}${e.message}` }));
  process.exit(1);
}
