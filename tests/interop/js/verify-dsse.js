#!/usr/bin/env node
// Verify govtune DSSE envelopes with sigstore-js, an implementation independent of
// securesystemslib (spec/format.md §1.5 "What stock tools can check").
//
//   node verify-dsse.js ENVELOPES KEY.pem [KEY.pem ...]
//
// ENVELOPES is a JSON Lines file (a govtune bundle, *.intoto.jsonl) or one envelope
// as JSON. Each signature is checked on its own: sigstore bundles carry exactly one
// signature, so it is wrapped in a v0.3 sigstore bundle whose publicKey hint is the
// signature's keyid, and @sigstore/verify checks it against the PEM key whose keyid
// (computed below from the format's keyid rule, spec/format.md §1.1.2) matches. No
// transparency log or timestamp is required: this checks the signature over
// PAE(payloadType, payload) under a trusted public key, which is all DSSE defines.
//
// Prints "OK: line N keyid=… predicateType=…" or "FAIL: line N: reason" per
// envelope. Exit 0: every envelope has a signature by a given key and every
// signature by a given key verifies; 1: some envelope failed; 2: usage or input error.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const IN_TOTO = 'application/vnd.in-toto+json';

// spec/format.md §1.1.2: keyid = hex SHA-256 of these exact bytes. The key text goes in
// verbatim: the keyid form escapes only '"' and '\\' (neither occurs in hex or PEM), so the
// PEM's line feeds stay raw 0x0A bytes; JSON.stringify would escape them and differ.
function keyidOf(keyObject) {
  let keytype;
  let scheme;
  let pub;
  if (keyObject.asymmetricKeyType === 'ed25519') {
    keytype = 'ed25519';
    scheme = 'ed25519';
    const der = keyObject.export({ type: 'spki', format: 'der' });
    pub = der.subarray(der.length - 32).toString('hex'); // the raw key ends the 44-byte SPKI
  } else if (keyObject.asymmetricKeyType === 'ec' && keyObject.asymmetricKeyDetails.namedCurve === 'prime256v1') {
    keytype = 'ecdsa';
    scheme = 'ecdsa-sha2-nistp256';
    pub = keyObject.export({ type: 'spki', format: 'pem' }); // 64-column base64, final LF
  } else {
    throw new Error(`expected an ECDSA P-256 or Ed25519 public key, got ${keyObject.asymmetricKeyType}`);
  }
  const text = `{"keytype":"${keytype}","keyval":{"public":"${pub}"},"scheme":"${scheme}"}`;
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex');
}

function verifyEnvelope(env, keys) {
  if (env === null || typeof env !== 'object' || !Array.isArray(env.signatures)) {
    throw new Error('expected a DSSE envelope object with a signatures list');
  }
  if (env.payloadType !== IN_TOTO) {
    throw new Error(`expected payloadType ${IN_TOTO}, got ${JSON.stringify(env.payloadType)}`);
  }
  const ours = env.signatures.filter((s) => s && keys[s.keyid]);
  if (ours.length === 0) {
    throw new Error('expected a signature by a given key, got none');
  }
  for (const sig of ours) {
    const bundle = bundleFromJSON({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: sig.keyid }, tlogEntries: [], timestampVerificationData: { rfc3161Timestamps: [] } },
      dsseEnvelope: { payload: env.payload, payloadType: env.payloadType, signatures: [{ keyid: sig.keyid, sig: sig.sig }] },
    });
    const trust = toTrustMaterial(
      { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
      (hint) => ({ publicKey: keys[hint], validFor: () => true }), // a key finder: no validity window
    );
    new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(toSignedEntity(bundle));
  }
  const statement = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
  if (statement._type !== 'https://in-toto.io/Statement/v1') {
    throw new Error(`expected an in-toto Statement v1, got _type ${JSON.stringify(statement._type)}`);
  }
  return { keyids: ours.map((s) => s.keyid), predicateType: statement.predicateType };
}

function main(argv) {
  if (argv.length < 2) {
    process.stderr.write('usage: verify-dsse.js ENVELOPES KEY.pem [KEY.pem ...]\n');
    return 2;
  }
  const keys = {};
  let text;
  try {
    for (const path of argv.slice(1)) {
      const key = crypto.createPublicKey(fs.readFileSync(path));
      keys[keyidOf(key)] = key;
    }
    text = fs.readFileSync(argv[0], 'utf8');
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    return 2;
  }
  let lines = text.split('\n');
  try {
    const whole = JSON.parse(text); // one envelope, possibly pretty-printed
    if (whole !== null && typeof whole === 'object' && !Array.isArray(whole)) lines = [JSON.stringify(whole)];
  } catch (e) {
    // JSON Lines: one envelope per line
  }
  let failed = 0;
  let seen = 0;
  lines.forEach((line, i) => {
    if (line === '' && i === lines.length - 1) return; // after the final newline
    seen += 1;
    try {
      const r = verifyEnvelope(JSON.parse(line), keys);
      process.stdout.write(`OK: line ${i + 1} keyid=${r.keyids.join(',')} predicateType=${r.predicateType}\n`);
    } catch (e) {
      failed += 1;
      process.stdout.write(`FAIL: line ${i + 1}: ${e.message}\n`);
    }
  });
  if (seen === 0) {
    process.stdout.write('FAIL: expected at least one envelope, got none\n');
    return 1;
  }
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
