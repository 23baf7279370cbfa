from faceaudit.cli import main

main()
