/**
 * FUNCTION_IMMUTABLE_READS_SETTING (warning): an IMMUTABLE function reads `current_setting()`.
 * PostgreSQL may evaluate it once when planning and reuse the result in a cached plan, or in an
 * index, for another tenant. Fix: STABLE.
 */
import { quoteTrusted } from '../../sql/ident.js'
import type { Rule } from '../rule.js'

export const functionImmutableReadsSetting: Rule<'function', 'FUNCTION_IMMUTABLE_READS_SETTING'> = {
  code: 'FUNCTION_IMMUTABLE_READS_SETTING',
  subject: 'function',
  reads: 'readImmutableSettingReaders: pg_proc (provolatile, prosrc, prosqlbody) outside extensions',
  check(fn) {
    const signature = `${quoteTrusted(fn.schema)}.${quoteTrusted(fn.name)}(${fn.args})`
    return {
      severity: 'warning',
      code: 'FUNCTION_IMMUTABLE_READS_SETTING',
      object: `function ${fn.schema}.${fn.name}(${fn.args})`,
      message: `${fn.schema}.${fn.name}(${fn.args}) is IMMUTABLE but reads current_setting(): PostgreSQL may evaluate it once when planning and reuse the result in a cached plan, or in an index, for another tenant`,
      fix: `ALTER FUNCTION ${signature} STABLE;`,
    }
  },
}
