/**
 * Whether SQL text holds more than one statement. Several statements cannot be Parsed as one
 * prepared statement, so such text takes the simple protocol, after the tenant, in a transaction.
 *
 * A small lexer, not a parser: it skips string literals ('...', E'...' with backslash escapes),
 * quoted identifiers, dollar-quoted bodies ($tag$...$tag$) and comments (-- and nested block comments), and
 * reports a `;` followed by anything but white space and comments. When unsure it answers true,
 * which only costs round trips, never correctness.
 */
export function hasSeveralStatements(text: string): boolean {
  if (!text.includes(';')) return false // the common case, answered without lexing
  let i = 0
  const n = text.length
  let sawSemicolon = false
  while (i < n) {
    const c = text[i]!
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f') {
      i++
      continue
    }
    if (c === '-' && text[i + 1] === '-') {
      const end = text.indexOf('\n', i)
      i = end === -1 ? n : end + 1
      continue
    }
    if (c === '/' && text[i + 1] === '*') {
      i = skipBlockComment(text, i)
      continue
    }
    if (sawSemicolon && c !== ';') return true // content after a statement terminator
    if (c === ';') {
      sawSemicolon = true
      i++
      continue
    }
    if (c === "'") {
      const escapes = i > 0 && (text[i - 1] === 'E' || text[i - 1] === 'e') && !isIdentChar(text[i - 2])
      i = skipQuoted(text, i, "'", escapes)
      continue
    }
    if (c === '"') {
      i = skipQuoted(text, i, '"', false)
      continue
    }
    if (c === '$' && !isIdentChar(text[i - 1])) {
      const match = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i))
      if (match) {
        const tag = match[0]
        const end = text.indexOf(tag, i + tag.length)
        if (end === -1) return true // unterminated: let the server judge, on the safe path
        i = end + tag.length
        continue
      }
    }
    i++
  }
  return false
}

function isIdentChar(c: string | undefined): boolean {
  return c !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(c)
}

function skipQuoted(text: string, start: number, quote: string, backslashEscapes: boolean): number {
  let i = start + 1
  while (i < text.length) {
    const c = text[i]
    if (backslashEscapes && c === '\\') {
      i += 2
      continue
    }
    if (c === quote) {
      if (text[i + 1] === quote) {
        i += 2 // doubled quote
        continue
      }
      return i + 1
    }
    i++
  }
  return text.length
}

function skipBlockComment(text: string, start: number): number {
  let depth = 0
  let i = start
  while (i < text.length) {
    if (text[i] === '/' && text[i + 1] === '*') {
      depth++
      i += 2
    } else if (text[i] === '*' && text[i + 1] === '/') {
      depth--
      i += 2
      if (depth === 0) return i
    } else {
      i++
    }
  }
  return text.length
}
