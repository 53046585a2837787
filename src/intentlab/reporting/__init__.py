"""Reporting: reads run folders only (never training code or torch): statistics, charts, generated
findings, and the markdown + self-contained HTML report."""
