/** The doctor's rule registry: one rule per finding code, one file per rule, nothing left out. */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { RULES } from '../../src/doctor/checks/index.js'
import type { FindingCode } from '../../src/doctor/types.js'

// A Record over the union: adding a code to FindingCode without listing it here fails to compile.
const CODES: Record<FindingCode, true> = {
  LOGIN_ROLE_SUPERUSER: true,
  LOGIN_ROLE_BYPASSRLS: true,
  ALLOWED_ROLE_BYPASSES_RLS: true,
  OWNER_NO_FORCE: true,
  RLS_DISABLED: true,
  RLS_NO_POLICY: true,
  POLICY_NO_WITH_CHECK: true,
  VIEW_NOT_SECURITY_INVOKER: true,
  MATVIEW_OVER_TENANT_TABLE: true,
  TRUNCATE_GRANTED: true,
  SESSION_SCOPE_TRANSACTION_POOLING: true,
  NOTHING_CHECKED: true,
  LOGIN_ROLE_OWNS_TABLE: true,
  POLICY_SETTING_NO_NULLIF: true,
  POLICY_SETTING_NO_INITPLAN: true,
  FUNCTION_IMMUTABLE_READS_SETTING: true,
  LOGIN_ROLE_INHERITS_TENANT_ROLES: true,
  ALLOWED_ROLE_NOT_GRANTED: true,
  SESSION_SCOPE_BEHIND_PROXY: true,
  POLICY_SETTING_BYPASS: true,
  POLICY_CAST_PREVENTS_INDEX: true,
}

const rules = Object.entries(RULES).flatMap(([kind, list]) => list.map((rule) => ({ kind, rule })))
const checksDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/doctor/checks')

it('has exactly one rule per finding code, registered under the kind of subject it checks', () => {
  expect(rules.map(({ rule }) => rule.code).sort()).toEqual(Object.keys(CODES).sort())
  for (const { kind, rule } of rules) {
    expect(rule.subject, rule.code).toBe(kind)
    expect(rule.reads.length, rule.code).toBeGreaterThan(0)
  }
})

it('keeps each rule in a file named after its code, and registers every file', () => {
  const files = fs.readdirSync(checksDir).filter((f) => f !== 'index.ts').sort()
  const expected = rules.map(({ rule }) => `${rule.code.toLowerCase().replaceAll('_', '-')}.ts`).sort()
  expect(files).toEqual(expected)
})
