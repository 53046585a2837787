"""`intentlab audit`: find a training set's label errors, duplicates, leaks and confusable intents.

    data --k-fold, cheap head on features computed once--> out-of-fold probabilities + features
         --cleanlab Datalab--> label issues (with a suggested label), outliers, near-duplicates
         + conflicting duplicates, train/test leaks, confusable intent pairs, class imbalance
         --> issues.csv, report.md, report.html, summary.json [, a cleaned copy of the data]

`audit/data.py` reads the rows (with their row numbers in the user's files), `audit/features.py`
computes the sentence features, `audit/crossval.py` the out-of-fold probabilities, `audit/issues.py`
the issues, `audit/report.py` the report. The input files are never modified.
"""
