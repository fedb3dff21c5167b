// Which gateway the suite tests. By default this repository's build
// (process mode: `node dist/gateway/src/main.js -c FILE`; container mode: the
// l7mp/gateway:local image). --gateway-cmd and --gateway-image name any other
// gateway that reads l7mp configuration files and serves l7mp's REST API:
//
//   --gateway-cmd 'CMD ... {config} ...'   process mode: run by /bin/sh -c with
//                                          {config} replaced by the (quoted) path
//                                          of the generated JSON config;
//                                          container mode: the container's
//                                          command, split like a shell would
//                                          (quotes, no expansions), {config} =
//                                          /config/gateway.json
//   --gateway-image IMAGE                  container mode: run IMAGE instead of
//                                          l7mp/gateway:local (its entrypoint
//                                          takes -c FILE unless --gateway-cmd
//                                          says otherwise)

export const CONFIG_PLACEHOLDER = '{config}';
/** Where the container driver puts the generated config inside the gateway container. */
export const CONTAINER_CONFIG_PATH = '/config/gateway.json';

/** Throws (message starting with "--gateway-cmd") when the command cannot take a config. */
export function checkGatewayCmd(cmd: string): void {
  if (cmd.trim() === '') throw new Error('--gateway-cmd is empty');
  if (!cmd.includes(CONFIG_PLACEHOLDER)) {
    throw new Error(`--gateway-cmd must contain ${CONFIG_PLACEHOLDER}, the path of the config file the suite writes for each gateway, e.g. --gateway-cmd 'node dist/gateway/src/main.js -c ${CONFIG_PLACEHOLDER}'`);
  }
}

/** POSIX single quotes: the path reaches the command as one word, whatever it holds. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The /bin/sh command line for process mode. */
export function processCommand(cmd: string, configFile: string): string {
  return cmd.split(CONFIG_PLACEHOLDER).join(shellQuote(configFile));
}

/** Split a command into argv as sh would for plain words and quotes (no variables, globs or operators). */
export function splitCommand(cmd: string): string[] {
  const out: string[] = [];
  let cur = '';
  let any = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < cmd.length; i++) {
    const ch = cmd[i]!;
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < cmd.length && '"\\$`'.includes(cmd[i + 1]!)) cur += cmd[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      any = true;
    } else if (ch === '\\' && i + 1 < cmd.length) {
      cur += cmd[++i];
      any = true;
    } else if (/\s/.test(ch)) {
      if (any || cur !== '') out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += ch;
    }
  }
  if (quote !== undefined) throw new Error(`--gateway-cmd: unterminated ${quote} quote`);
  if (any || cur !== '') out.push(cur);
  return out;
}

/** The container's command for container mode. */
export function containerCommand(cmd: string | undefined): string[] {
  if (cmd === undefined) return ['-c', CONTAINER_CONFIG_PATH];
  return splitCommand(cmd).map((a) => a.split(CONFIG_PLACEHOLDER).join(CONTAINER_CONFIG_PATH));
}
