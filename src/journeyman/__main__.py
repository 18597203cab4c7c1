from journeyman.cli import main

main()
