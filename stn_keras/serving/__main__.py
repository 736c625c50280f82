"""``python -m stn_keras.serving``: see `stn_keras.serving.cli`."""

from stn_keras.serving.cli import main

if __name__ == "__main__":
    main()
