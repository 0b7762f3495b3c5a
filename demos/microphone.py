"""Live keyword spotting from your microphone with the shipped model.

    python demos/microphone.py [--device N] [--seconds S] [--threshold P]

The same as `aum listen`; needs `pip install 'streaming_aum[mic]'` and `apt-get install
libportaudio2`. `aum listen --list-devices` lists the inputs.
"""

import sys

from streaming_aum.cli import main

if __name__ == "__main__":
    sys.exit(main(["listen", *sys.argv[1:]]))
