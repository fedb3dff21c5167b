// Where the REST API's bearer token comes from: the environment variable
// L7MP_API_TOKEN when set and non-empty (an operator can then secure an image
// whose config file is baked in, e.g. from a Kubernetes Secret), else
// admin.api_token, else the file admin.api_token_file names. Never from REST.

import fs from 'node:fs';
import { invalid } from '../core/errors.js';
import { TOKEN_ENV } from '../api/security.js';

const TOKEN_SYNTAX = /^[\x21-\x7e]+$/; // visible ASCII: it must fit an HTTP header after "Bearer "

function checkToken(token: string, field: string): string {
  if (token.length === 0) throw invalid(field, 'is empty');
  if (!TOKEN_SYNTAX.test(token)) throw invalid(field, 'must be visible ASCII characters without spaces');
  return token;
}

export interface TokenSetting {
  token: string | undefined;
  /** Where it came from, for the startup log (never the token itself). */
  source: string | undefined;
}

/** The token, from the admin settings (already schema-checked: strings) and the environment; throws invalid(field). */
export function resolveApiToken(admin: { readonly api_token?: string; readonly api_token_file?: string }, env: NodeJS.ProcessEnv): TokenSetting {
  const { api_token: inline, api_token_file: file } = admin;
  if (inline !== undefined && file !== undefined) throw invalid('admin.api_token', 'set either api_token or api_token_file, not both');
  if (file === '') throw invalid('admin.api_token_file', 'must be a file path');
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    return { token: checkToken(fromEnv.trim(), TOKEN_ENV), source: TOKEN_ENV };
  }
  if (inline !== undefined) return { token: checkToken(inline, 'admin.api_token'), source: 'admin.api_token' };
  if (file !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw invalid('admin.api_token_file', `cannot read "${file}": ${(err as Error).message}`);
    }
    // Secret files usually end with a newline.
    return { token: checkToken(text.trim(), 'admin.api_token_file'), source: `admin.api_token_file (${file})` };
  }
  return { token: undefined, source: undefined };
}
