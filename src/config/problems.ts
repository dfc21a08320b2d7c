/** One problem with the configuration, named by its path (`accounts.crm.auth.tokenUrl`). */
export interface ConfigProblem {
  path: string;
  message: string;
}
