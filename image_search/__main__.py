import sys

from image_search.cli import main

sys.exit(main())
