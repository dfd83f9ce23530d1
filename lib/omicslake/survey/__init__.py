"""Survey and study data: REDCap data dictionaries, typing of exports, branching logic, scales and
psychometrics. Pure logic on plain Python values and numpy arrays; the jobs do the IO."""
