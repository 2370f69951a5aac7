/**
 * The statements pg-tenant writes in front of and behind a caller's statement (the tenant's
 * `set_config`, BEGIN, the reset), and the names they are prepared under.
 */

/**
 * A statement of the prefix or the suffix: bound with text values, executed, no Describe. Parsed
 * unnamed, or, with `name`, prepared once per connection under that name and only bound afterwards.
 */
export interface PrefixStatement {
  readonly text: string
  readonly values: readonly string[]
  /** A name derived from the text ({@link preparedName}): the same name always means the same text. */
  readonly name?: string | undefined
  /** Bind + Execute of the named statement, encoded on first use (the statement is immutable). */
  wire?: Uint8Array
  /**
   * For a named statement that must live and die with another one (the reset that follows a
   * prepared tenant statement): the other one's name. It is parsed exactly when that one is
   * parsed in the same pipeline, and never tracked on its own.
   */
  readonly unit?: string | undefined
}

const names = new Map<string, string>()

/**
 * The name a prefix statement is prepared under: `pg_tenant_` and a hash of its text, so that two
 * pools, two copies of the library or two versions of it that share a pooled server connection
 * mean the same statement by the same name.
 */
export function preparedName(text: string): string {
  let name = names.get(text)
  if (name === undefined) {
    // FNV-1a, 32 bits, twice with different offsets: 64 bits of name for a handful of texts.
    let a = 0x811c9dc5
    let b = 0x01000193 ^ 0x5bd1e995
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i)
      a = Math.imul(a ^ c, 0x01000193) >>> 0
      b = Math.imul(b ^ c, 0x01000193) >>> 0
    }
    name = `pg_tenant_${a.toString(16).padStart(8, '0')}${b.toString(16).padStart(8, '0')}`
    if (names.size < 1024) names.set(text, name)
  }
  return name
}
