from edgevit.cli import main

main()
