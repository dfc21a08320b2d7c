import { describe, expect, it } from 'vitest';
import { COMMANDS, flagsOf, helpText, parseCli, UsageError } from '../../src/cli-args.js';
import { envTwin, withEnvTwins } from '../../src/config/quick-mode.js';

describe('§2 command line (issue 8)', () => {
  it('issue 8: --help of every command lists every one of its flags with its env twin and (where there is one) its default', () => {
    for (const command of COMMANDS) {
      const help = helpText(command, '1.2.3');
      for (const spec of flagsOf(command)) {
        const line = help
          .split('\n')
          .find((text) =>
            text.trimStart().startsWith(`--${spec.name}${spec.value === undefined ? ' ' : ` ${spec.value}`}`),
          );
        expect(line, `${command} --${spec.name}`).toBeDefined();
        expect(line).toContain(`[${envTwin(spec.name)}`);
        if (spec.default !== undefined) expect(line).toContain(`(default: ${spec.default})`);
      }
    }
    expect(helpText('check', '1.2.3')).toMatch(/--login .*\[BEARER_SIDECAR_LOGIN=1\]/);
    expect(helpText('authorize', '1.2.3')).toMatch(/--out FILE .*\[BEARER_SIDECAR_OUT\]/);
    expect(helpText('serve', '1.2.3')).toMatch(/--log-format FORMAT .*default: pretty on a terminal, else json/);
  });

  it('issue 8: an unknown flag is an error suggesting the nearest flag of that command', () => {
    expect(() => parseCli(['check', '--jsn'])).toThrow(/did you mean --json\?/);
    expect(() => parseCli(['authorize', 'crm', '--outt', 'x'])).toThrow(/did you mean --out\?/);
    expect(() => parseCli(['--tokne-url', 'x'])).toThrow(/did you mean --token-url\?/);
    expect(() => parseCli(['demo', '--lisen', '1'])).toThrow(/did you mean --listen\?/);
  });

  it('issue 8: a flag of another command says which command has it', () => {
    expect(() => parseCli(['--login'])).toThrow(/--login is a flag of check; see bearer-sidecar check --help/);
    expect(() => parseCli(['check', '--listen', '1'])).toThrow(/--listen is a flag of serve/);
    expect(() => parseCli(['xyzzy-nothing-like'])).toThrow(UsageError);
    expect(() => parseCli(['chek'])).toThrow(/did you mean check\?/);
  });

  it('§2: authorize takes exactly one ACCOUNT; other commands take none', () => {
    expect(parseCli(['authorize', 'crm', '--config', 'c.yaml'])).toMatchObject({
      command: 'authorize',
      account: 'crm',
      flags: { config: 'c.yaml' },
    });
    expect(() => parseCli(['authorize'])).toThrow(/one ACCOUNT \(none given\)/);
    expect(() => parseCli(['authorize', 'a', 'b'])).toThrow(/got a b/);
    expect(() => parseCli(['check', 'stray'])).toThrow(UsageError);
    expect(parseCli(['authorize', '--help']).help).toBe(true);
  });

  it('§2: boolean flags take their env twin as 1/true/yes/on; a given flag wins over every env twin', () => {
    const specs = flagsOf('check');
    expect(withEnvTwins({}, { BEARER_SIDECAR_JSON: '1', BEARER_SIDECAR_LOGIN: 'no' }, specs)).toMatchObject({
      json: 'true',
      login: undefined,
    });
    expect(withEnvTwins(parseCli(['check', '--login']).flags, { BEARER_SIDECAR_LOGIN: '0' }, specs).login).toBe('true');
    expect(withEnvTwins({}, { BEARER_SIDECAR_LOG_FORMAT: 'pretty' }, flagsOf('demo'))['log-format']).toBe('pretty');
  });
});
