"""Learning from served traffic: pick the logged queries worth labelling (`review`), move them through
Label Studio and back (`labelstudio`), and see how traffic drifts from the training data (`drift`).

    intentlab serve RUN --log logs/            # serving/traffic_log.py
    intentlab review logs/ --run RUN --out review/ --budget 200
    ... label review/labelstudio_tasks.json in Label Studio, export JSON ...
    intentlab review --import export.json --out labelled.csv
    intentlab train --config RUN/config.yaml --extra-data labelled.csv --out RUN2
    intentlab drift logs/ --run RUN --out drift/
"""
